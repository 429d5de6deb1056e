# The XLA backend (src/backends/xla/): PJRT plugins loaded at run time. Configure finds the PJRT
# C API header inside the installed xla-cpu-pjrt wheel (the header is part of that dependency,
# never copied here), and the plugins themselves in the project's Python environment:
#   xla:cpu   xla_plugins/xla_cpu_pjrt/xla_cpu_pjrt.so (xla-cpu-pjrt),
#             lammps_jax_pjrt_cpu/pjrt_c_api_cpu_plugin.so (lammps-jax-pjrt-cpu)
#   tpu       libtpu/libtpu.so (libtpu; scripts/setup.sh --dev)
#   xla:cuda  jax_plugins/xla_cuda1*/xla_cuda_plugin.so (jax-cuda12-pjrt / jax-cuda13-pjrt)
# Their paths are compiled in as defaults; BEAMLET_PJRT_PLUGIN overrides them at run time.
#
# BEAMLET_WITH_XLA: AUTO (on when the header is found), ON (required), OFF.
set(BEAMLET_WITH_XLA AUTO CACHE STRING "Build the XLA (PJRT) backend: AUTO, ON or OFF")
set_property(CACHE BEAMLET_WITH_XLA PROPERTY STRINGS AUTO ON OFF)
set(BEAMLET_PYTHON_ENV "${CMAKE_SOURCE_DIR}/.venv" CACHE PATH
    "The Python environment holding the PJRT header and plugins (scripts/setup.sh makes it)")

set(BEAMLET_HAVE_XLA OFF)
set(BEAMLET_PJRT_INCLUDE_DIR "")
set(BEAMLET_PJRT_CPU_PLUGINS "")
set(BEAMLET_PJRT_TPU_PLUGIN "")
set(BEAMLET_PJRT_CUDA_PLUGIN "")
if(NOT BEAMLET_WITH_XLA STREQUAL "OFF")
  set(site ${BEAMLET_PYTHON_ENV}/lib/python3*/site-packages)
  file(GLOB headers ${site}/xla_plugins/xla_cpu_pjrt/include/pjrt_c_api.h
                    ${site}/*/include/xla/pjrt/c/pjrt_c_api.h)
  if(headers)
    list(GET headers 0 header)
    get_filename_component(BEAMLET_PJRT_INCLUDE_DIR ${header} DIRECTORY)
    set(BEAMLET_HAVE_XLA ON)
  elseif(BEAMLET_WITH_XLA STREQUAL "ON")
    message(FATAL_ERROR "BEAMLET_WITH_XLA=ON, but no pjrt_c_api.h under ${BEAMLET_PYTHON_ENV} "
                        "(scripts/setup.sh installs xla-cpu-pjrt, which ships it)")
  endif()
  file(GLOB cpu_plugins ${site}/xla_plugins/xla_cpu_pjrt/xla_cpu_pjrt.so
                        ${site}/lammps_jax_pjrt_cpu/pjrt_c_api_cpu_plugin.so)
  list(JOIN cpu_plugins ":" BEAMLET_PJRT_CPU_PLUGINS)
  file(GLOB tpu_plugins ${site}/libtpu/libtpu.so)
  if(tpu_plugins)
    list(GET tpu_plugins 0 BEAMLET_PJRT_TPU_PLUGIN)
  endif()
  file(GLOB cuda_plugins ${site}/jax_plugins/xla_cuda1*/xla_cuda_plugin.so)
  if(cuda_plugins)
    list(GET cuda_plugins 0 BEAMLET_PJRT_CUDA_PLUGIN)
  endif()
endif()

# Called after the backends layer exists: its XLA sources, the header and the plugin paths.
function(beamlet_xla_backend)
  file(GLOB sources CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/src/backends/xla/*.c)
  target_sources(beamlet_backends PRIVATE ${sources})
  target_include_directories(beamlet_backends SYSTEM PRIVATE ${BEAMLET_PJRT_INCLUDE_DIR})
  target_compile_definitions(beamlet_backends PUBLIC BEAMLET_HAVE_XLA=1)
  target_compile_definitions(beamlet_backends PRIVATE
    BEAMLET_PJRT_CPU_PLUGINS="${BEAMLET_PJRT_CPU_PLUGINS}"
    BEAMLET_PJRT_TPU_PLUGIN="${BEAMLET_PJRT_TPU_PLUGIN}"
    BEAMLET_PJRT_CUDA_PLUGIN="${BEAMLET_PJRT_CUDA_PLUGIN}")
  beamlet_layer_link(backends ${CMAKE_DL_LIBS})
endfunction()

# The XLA tests run on every CPU plugin configure found: the plain runs of the parity table, the
# gradient checks, the PyTorch fixtures and the device test use the first (the default), and each
# further plugin gets its own runs of them, restricted to xla:cpu (BEAMLET_TEST_DEVICE).
function(beamlet_xla_tests)
  if(NOT BEAMLET_HAVE_XLA)
    return()
  endif()
  set_property(TEST backends/test_xla_device APPEND PROPERTY ENVIRONMENT
               "BEAMLET_TEST_LIBTPU=${BEAMLET_PJRT_TPU_PLUGIN}")
  string(REPLACE ":" ";" plugins "${BEAMLET_PJRT_CPU_PLUGINS}")
  list(LENGTH plugins count)
  if(count LESS 2)
    return()
  endif()
  list(SUBLIST plugins 1 -1 others)
  foreach(plugin ${others})
    get_filename_component(tag ${plugin} NAME_WE)
    foreach(test backends/test_backend_parity backends/test_gradcheck nn/test_fixtures backends/test_xla_device
                 nn/test_xla_training)
      get_filename_component(exe ${test} NAME)
      add_test(NAME ${test}_${tag} COMMAND ${exe})
      set_tests_properties(${test}_${tag} PROPERTIES TIMEOUT 900 ENVIRONMENT
        "BEAMLET_PJRT_PLUGIN=${plugin};BEAMLET_TEST_DEVICE=xla:cpu;BEAMLET_SOURCE_DIR=${CMAKE_SOURCE_DIR};BEAMLET_FIXTURES=${CMAKE_SOURCE_DIR}/tests/fixtures;OMP_WAIT_POLICY=PASSIVE")
    endforeach()
  endforeach()
endfunction()
