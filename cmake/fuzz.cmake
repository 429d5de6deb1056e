# -DBEAMLET_FUZZ=ON (with clang: -DCMAKE_C_COMPILER=clang): tests/fuzz/fuzz_*.c become libFuzzer
# programs in <build>/fuzz/, built by `cmake --build <build> --target fuzz`. Every C file is
# compiled with the fuzzer's coverage instrumentation and ASan + UBSan, so a bad read in a
# parser is a crash the fuzzer keeps. scripts/fuzz.sh (`make fuzz`, run by CI) builds them,
# seeds each corpus with the inputs the parser tests build (bl_test_fuzz_seed) and runs each
# for a bounded time. libFuzzer's runtime comes with clang's compiler-rt (Debian:
# libclang-rt-dev; scripts/setup.sh installs it).
option(BEAMLET_FUZZ "Build the libFuzzer targets in tests/fuzz (needs clang)" OFF)

# Each target and the layer whose parsers it drives: it links that layer alone and sees its
# include tree. Every tests/fuzz/fuzz_*.c must be listed.
set(BEAMLET_FUZZ_TARGETS fuzz_json:core fuzz_safetensors:io fuzz_idx:io fuzz_image:io fuzz_hints:pipeline)

if(BEAMLET_FUZZ)
  if(BEAMLET_SANITIZE)
    message(FATAL_ERROR "-DBEAMLET_FUZZ=ON already builds with ASan + UBSan: leave BEAMLET_SANITIZE off")
  endif()
  if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "-DBEAMLET_FUZZ=ON needs clang's libFuzzer: configure a separate build folder with "
                        "-DCMAKE_C_COMPILER=clang (scripts/fuzz.sh does)")
  endif()
  add_compile_options("$<$<COMPILE_LANGUAGE:C>:-fsanitize=fuzzer-no-link,address,undefined>"
                      "$<$<COMPILE_LANGUAGE:C>:-fno-sanitize-recover=all>"
                      "$<$<COMPILE_LANGUAGE:C>:-fno-omit-frame-pointer>")
  add_link_options(-fsanitize=address,undefined)
endif()

function(beamlet_fuzz_targets)
  file(GLOB sources RELATIVE ${CMAKE_SOURCE_DIR}/tests/fuzz ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_*.c)
  set(listed "")
  foreach(entry ${BEAMLET_FUZZ_TARGETS})
    string(REPLACE ":" ";" parts ${entry})
    list(GET parts 0 name)
    list(APPEND listed ${name}.c)
  endforeach()
  foreach(source ${sources})
    if(NOT source IN_LIST listed)
      message(FATAL_ERROR "tests/fuzz/${source} is not in BEAMLET_FUZZ_TARGETS (cmake/fuzz.cmake): "
                          "name the layer it fuzzes")
    endif()
  endforeach()
  if(NOT BEAMLET_FUZZ)
    return()
  endif()
  add_custom_target(fuzz)
  foreach(entry ${BEAMLET_FUZZ_TARGETS})
    string(REPLACE ":" ";" parts ${entry})
    list(GET parts 0 name)
    list(GET parts 1 layer)
    add_executable(${name} EXCLUDE_FROM_ALL tests/fuzz/${name}.c)
    target_include_directories(${name} PRIVATE ${BEAMLET_LAYER_TREES}/${layer})
    target_link_libraries(${name} PRIVATE beamlet_${layer})
    target_link_options(${name} PRIVATE -fsanitize=fuzzer)
    set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/fuzz)
    add_dependencies(fuzz ${name})
  endforeach()
endfunction()
