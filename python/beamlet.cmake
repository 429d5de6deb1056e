# The C ABI (libbeamlet.so, src/capi/) and the Python package's tests, included by the top-level
# CMakeLists.txt with one line. Everything the Python side adds to the build lives here.
include(${CMAKE_SOURCE_DIR}/src/capi/capi.cmake)
