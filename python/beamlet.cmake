# The Python wheel's libbeamlet.so (the C ABI alone, src/capi/capi.cmake) and the Python
# package's tests, included by the top-level CMakeLists.txt with one line. Everything the Python
# side adds to the build lives here; the C ABI itself is a layer like the others.
include(${CMAKE_SOURCE_DIR}/src/capi/capi.cmake)

# ---- the Python package's tests (pytest in the project's .venv, made by scripts/setup.sh) -------
# One ctest entry per test file, so ctest -j spreads them. The package is tested from the source
# tree against this build's libbeamlet.so and CLI; python/wheel builds the wheel as
# `pip install ./python` does and runs it from an install of its own.
set(BEAMLET_VENV_PYTHON ${CMAKE_SOURCE_DIR}/.venv/bin/python)
set(beamlet_py_tests abi handler runners training examples)
if(EXISTS ${BEAMLET_VENV_PYTHON})
  set(beamlet_py_env
    "BEAMLET_LIBRARY=$<TARGET_FILE:beamlet_capi_shared>" "BEAMLET_CLI=$<TARGET_FILE:beamlet_cli>"
    "BEAMLET_SOURCE_DIR=${CMAKE_SOURCE_DIR}"
    "PYTHONPATH=${CMAKE_SOURCE_DIR}/python/src:${CMAKE_SOURCE_DIR}/python/tests"
    "PYTHONDONTWRITEBYTECODE=1" "OMP_WAIT_POLICY=PASSIVE")
  foreach(suite ${beamlet_py_tests})
    add_test(NAME python/${suite}
             COMMAND ${BEAMLET_VENV_PYTHON} -m pytest -q -p no:cacheprovider
                     ${CMAKE_SOURCE_DIR}/python/tests/test_${suite}.py
             WORKING_DIRECTORY ${CMAKE_BINARY_DIR})
    set_tests_properties(python/${suite} PROPERTIES ENVIRONMENT "${beamlet_py_env}" TIMEOUT 900)
  endforeach()
  # The longest tests first (ctest -j starts higher COST earlier; a fresh clone has no timings):
  # they overlap the C tests instead of running alone at the end.
  set_tests_properties(python/examples PROPERTIES COST 1000)
  set_tests_properties(python/runners python/training python/handler PROPERTIES COST 500)
  add_test(NAME python/wheel COMMAND ${CMAKE_SOURCE_DIR}/python/tests/wheel_test.sh ${BEAMLET_VENV_PYTHON}
           ${CMAKE_BINARY_DIR}/python-wheel)
  set_tests_properties(python/wheel PROPERTIES TIMEOUT 900 COST 800
    ENVIRONMENT "BEAMLET_SOURCE_DIR=${CMAKE_SOURCE_DIR};OMP_WAIT_POLICY=PASSIVE")
else()
  # Without the venv one failing test says so, rather than the Python tests quietly not existing.
  add_test(NAME python/needs_venv COMMAND ${CMAKE_COMMAND} -E echo
           "no ${BEAMLET_VENV_PYTHON}: run scripts/setup.sh, then configure again")
  set_tests_properties(python/needs_venv PROPERTIES WILL_FAIL ON)
endif()
