# The layers of beamlet as the build enforces them (docs/architecture.md draws them):
#
#   beamlet_layer(NAME SOURCES ... USES lower layers ... PUBLIC_HEADERS ... [INTERFACE_HEADERS ...])
#
# makes one static library per layer (position-independent, so the layers also combine into
# libbeamlet.so) that links only the layers it USES, and an include tree for it in the build
# folder, <build>/layers/NAME:
#   beamlet/*.h        the public headers of this layer and of every layer below it, no others
#   NAME/...           this layer's own internal headers (src/NAME/**/*.h and *.cuh)
#   INTERFACE_HEADERS  internal headers a lower layer offers this one (the backend interface
#                      src/tensor/backend.h, for the backends), as "<layer>/<file>"
# The tree is the layer's only include path (PRIVATE, so it does not leak to the layers above):
# a wrong-way #include finds no file, and a wrong-way call finds no symbol when the layer's
# tests link it alone. Every header in include/beamlet must belong to exactly one layer.
set(BEAMLET_LAYER_TREES ${CMAKE_BINARY_DIR}/layers)
set_property(GLOBAL PROPERTY BEAMLET_LAYERS "")
set_property(GLOBAL PROPERTY BEAMLET_OWNED_HEADERS "")

# Links (or, where links are not possible, copies) `from` to `to`.
function(beamlet_link_file from to)
  get_filename_component(dir ${to} DIRECTORY)
  file(MAKE_DIRECTORY ${dir})
  file(CREATE_LINK ${from} ${to} SYMBOLIC COPY_ON_ERROR)
endfunction()

function(beamlet_layer name)
  cmake_parse_arguments(L "" "" "SOURCES;USES;PUBLIC_HEADERS;INTERFACE_HEADERS" ${ARGN})
  set(tree ${BEAMLET_LAYER_TREES}/${name})
  file(REMOVE_RECURSE ${tree})
  # The public headers this layer may include: its own and those of every layer it uses.
  set(visible ${L_PUBLIC_HEADERS})
  foreach(lower ${L_USES})
    get_property(lower_headers GLOBAL PROPERTY BEAMLET_VISIBLE_${lower})
    list(APPEND visible ${lower_headers})
  endforeach()
  list(REMOVE_DUPLICATES visible)
  set_property(GLOBAL PROPERTY BEAMLET_VISIBLE_${name} ${visible})
  foreach(h ${visible})
    beamlet_link_file(${CMAKE_SOURCE_DIR}/include/beamlet/${h} ${tree}/beamlet/${h})
  endforeach()
  foreach(h ${L_PUBLIC_HEADERS})
    set_property(GLOBAL APPEND PROPERTY BEAMLET_OWNED_HEADERS ${h})
  endforeach()
  file(GLOB_RECURSE internal CONFIGURE_DEPENDS RELATIVE ${CMAKE_SOURCE_DIR}/src ${CMAKE_SOURCE_DIR}/src/${name}/*.h
       ${CMAKE_SOURCE_DIR}/src/${name}/*.cuh)
  foreach(h ${internal} ${L_INTERFACE_HEADERS})
    beamlet_link_file(${CMAKE_SOURCE_DIR}/src/${h} ${tree}/${h})
  endforeach()

  add_library(beamlet_${name} STATIC ${L_SOURCES})
  set_target_properties(beamlet_${name} PROPERTIES POSITION_INDEPENDENT_CODE ON)
  target_include_directories(beamlet_${name} PRIVATE ${tree})
  foreach(lower ${L_USES})
    target_link_libraries(beamlet_${name} PUBLIC beamlet_${lower})
  endforeach()
  set_property(GLOBAL APPEND PROPERTY BEAMLET_LAYERS ${name})
endfunction()

# A layer's external dependency: linked to the layer (and so to everything above it) and
# remembered for the combined libraries, which are made of the layers' objects alone.
function(beamlet_layer_link name)
  target_link_libraries(beamlet_${name} PUBLIC ${ARGN})
  set_property(GLOBAL APPEND PROPERTY BEAMLET_EXTERNAL_LIBS ${ARGN})
endfunction()

# Fails configuration when a public header belongs to no layer (or to two).
function(beamlet_check_header_owners)
  get_property(owned GLOBAL PROPERTY BEAMLET_OWNED_HEADERS)
  file(GLOB all RELATIVE ${CMAKE_SOURCE_DIR}/include/beamlet ${CMAKE_SOURCE_DIR}/include/beamlet/*.h)
  foreach(h ${all})
    list(FIND owned ${h} at)
    if(at EQUAL -1)
      message(FATAL_ERROR "include/beamlet/${h} belongs to no layer: add it to a beamlet_layer's PUBLIC_HEADERS")
    endif()
  endforeach()
  set(seen "")
  foreach(h ${owned})
    if(h IN_LIST seen)
      message(FATAL_ERROR "include/beamlet/${h} is listed in two layers")
    endif()
    list(APPEND seen ${h})
  endforeach()
endfunction()

# libbeamlet.a and libbeamlet.so: every layer's objects in one library each, for installing,
# for the Python wheel and for programs outside this tree.
function(beamlet_combined_libraries)
  get_property(layers GLOBAL PROPERTY BEAMLET_LAYERS)
  get_property(external GLOBAL PROPERTY BEAMLET_EXTERNAL_LIBS)
  list(REMOVE_DUPLICATES external)
  set(objects "")
  foreach(layer ${layers})
    list(APPEND objects $<TARGET_OBJECTS:beamlet_${layer}>)
  endforeach()
  add_library(beamlet STATIC ${objects})
  add_library(beamlet_shared SHARED ${objects})
  set_target_properties(beamlet_shared PROPERTIES OUTPUT_NAME beamlet VERSION ${PROJECT_VERSION}
                                                  SOVERSION ${PROJECT_VERSION_MAJOR})
  # Every symbol a layer needs is in the library or in a listed dependency.
  target_link_options(beamlet_shared PRIVATE "LINKER:--no-undefined")
  foreach(target beamlet beamlet_shared)
    target_link_libraries(${target} PUBLIC ${external})
    target_include_directories(${target} INTERFACE $<BUILD_INTERFACE:${CMAKE_SOURCE_DIR}/include>
                                                   $<INSTALL_INTERFACE:include>)
    # The layers' compile definitions (BEAMLET_HAVE_ONEDNN, ...) for the programs that use it.
    foreach(layer ${layers})
      target_compile_definitions(${target} PUBLIC $<TARGET_PROPERTY:beamlet_${layer},INTERFACE_COMPILE_DEFINITIONS>)
      target_link_options(${target} PUBLIC $<TARGET_PROPERTY:beamlet_${layer},INTERFACE_LINK_OPTIONS>)
    endforeach()
  endforeach()
endfunction()
