# The Python wheel's libbeamlet.so: the C ABI (the capi layer, declared with the others in the
# top-level CMakeLists.txt) and what it reaches, exporting bl_capi_* and nothing else. Included
# by python/beamlet.cmake.
#
# Two shared libraries, on purpose. The project's libbeamlet.so (beamlet_shared, installed in
# lib/) is beamlet's whole C API for C programs: the install test builds one against the
# resolver and the ops, so everything stays exported there. The wheel's library is loaded by
# ctypes and only through the ABI: a version script hides every other symbol, so the internal
# API can change without breaking a built wheel and a second beamlet in the process (or another
# library's `bl_` names) cannot be bound to it by accident. It links the capi layer's objects
# against the lower layers' static libraries, so the linker pulls in only what the ABI reaches
# (no CLI reports, no benchmarks' helpers).
add_library(beamlet_capi_shared SHARED $<TARGET_OBJECTS:beamlet_capi>)
target_link_libraries(beamlet_capi_shared PRIVATE beamlet_ml)
set_target_properties(beamlet_capi_shared PROPERTIES OUTPUT_NAME beamlet
  LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/python
  LINK_DEPENDS ${CMAKE_SOURCE_DIR}/src/capi/exports.map)
target_link_options(beamlet_capi_shared PRIVATE "LINKER:--version-script=${CMAKE_SOURCE_DIR}/src/capi/exports.map"
                    "LINKER:--no-undefined")
# The wheel (python/pyproject.toml, scikit-build-core) installs it next to the package; a plain
# `cmake --install` leaves it out (the project's libbeamlet.so goes to lib/).
install(TARGETS beamlet_capi_shared LIBRARY DESTINATION beamlet COMPONENT python EXCLUDE_FROM_ALL)
# The shipped model travels in the wheel too (0.7 MB), so `python python/examples/cpu_inference.py`
# finds it from any folder, as the C programs find share/beamlet/models/ (beamlet.shipped_model()).
install(FILES ${CMAKE_SOURCE_DIR}/models/fashion-resnet18-w8.safetensors DESTINATION beamlet/models
        COMPONENT python EXCLUDE_FROM_ALL)

# The ABI's own C test links the wheel's library alone, as the Python package sees it: the
# generic test loop linked it with the capi layer's static library, so that link is replaced.
if(TARGET test_capi)
  set_target_properties(test_capi PROPERTIES LINK_LIBRARIES "beamlet_capi_shared;${MATH_LIBRARY}")
endif()
# Only the ABI is exported: a symbol the version script lets slip would become part of it.
add_test(NAME capi/exports COMMAND ${CMAKE_COMMAND} -DLIB=$<TARGET_FILE:beamlet_capi_shared>
         -P ${CMAKE_SOURCE_DIR}/src/capi/check_exports.cmake)
