# The C ABI (include/beamlet/capi.h, src/capi/*.c) as the shared library libbeamlet.so, the one
# the Python package (python/) loads. Included by the top-level CMakeLists.txt.
#
# The shared library is made from the static library's objects: beamlet_lib is compiled as
# position-independent code (on x86-64 that costs the static programs next to nothing), and the
# linker pulls in what the ABI reaches. A version script exports bl_capi_* only.
set_target_properties(beamlet_lib PROPERTIES POSITION_INDEPENDENT_CODE ON)

file(GLOB BEAMLET_CAPI_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/capi/*.c)
add_library(beamlet_shared SHARED ${BEAMLET_CAPI_SOURCES})
set_target_properties(beamlet_shared PROPERTIES OUTPUT_NAME beamlet
  LINK_DEPENDS ${CMAKE_SOURCE_DIR}/src/capi/exports.map)
target_include_directories(beamlet_shared PUBLIC ${CMAKE_SOURCE_DIR}/include PRIVATE ${CMAKE_SOURCE_DIR}/src)
target_compile_definitions(beamlet_shared PRIVATE BEAMLET_VERSION_STRING="${PROJECT_VERSION}")
target_link_libraries(beamlet_shared PRIVATE beamlet_lib)
target_link_options(beamlet_shared PRIVATE "LINKER:--version-script=${CMAKE_SOURCE_DIR}/src/capi/exports.map"
                    "LINKER:--no-undefined")
# The wheel (python/pyproject.toml, scikit-build-core) installs the library next to the package.
install(TARGETS beamlet_shared LIBRARY DESTINATION beamlet COMPONENT python)

# The ABI's own C test links the shared library alone, as the Python package sees it: the
# generic test loop linked it with the static library, so that link is replaced here.
if(TARGET test_capi)
  set_target_properties(test_capi PROPERTIES LINK_LIBRARIES "beamlet_shared;${MATH_LIBRARY}")
endif()
# Only the ABI is exported: a symbol the version script lets slip would become part of it.
add_test(NAME capi/exports COMMAND ${CMAKE_COMMAND} -DLIB=$<TARGET_FILE:beamlet_shared>
         -P ${CMAKE_SOURCE_DIR}/src/capi/check_exports.cmake)
