# The CUDA backend, included by the top-level CMakeLists.txt when nvcc, cuBLAS and cuDNN are
# found. Host code is C; kernels are .cu files behind extern "C" launchers.
#
# Architectures: sm_80 and sm_90 machine code (A100, H100: no JIT on either) plus compute_90
# PTX, so newer GPUs (Blackwell) JIT-compile the H100 code on first run. bf16 needs sm_80, so
# nothing older is listed. Override with -DCMAKE_CUDA_ARCHITECTURES=... as usual.
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES OR CMAKE_CUDA_ARCHITECTURES STREQUAL "")
  set(CMAKE_CUDA_ARCHITECTURES "80-real;90" CACHE STRING "CUDA architectures" FORCE)
endif()
enable_language(CUDA)
set(CMAKE_CUDA_STANDARD 17)
set(CMAKE_CUDA_STANDARD_REQUIRED ON)

file(GLOB BEAMLET_CUDA_SOURCES CONFIGURE_DEPENDS
     ${CMAKE_SOURCE_DIR}/src/backends/cuda/*.c ${CMAKE_SOURCE_DIR}/src/backends/cuda/*.cu)
target_sources(beamlet_backends PRIVATE ${BEAMLET_CUDA_SOURCES})
# beamlet_backends exists before CUDA is enabled, so it did not pick up the default: set it.
set_target_properties(beamlet_backends PROPERTIES CUDA_ARCHITECTURES "${CMAKE_CUDA_ARCHITECTURES}")

# The directory-wide -Wall/-Wextra/-Werror are gcc flags that nvcc rejects: keep them for C,
# and give CUDA sources the nvcc spelling (host side through -Xcompiler, device side through
# nvcc's own warnings).
get_target_property(beamlet_opts beamlet_backends COMPILE_OPTIONS)
set(beamlet_c_opts "")
foreach(opt ${beamlet_opts})
  list(APPEND beamlet_c_opts "$<$<COMPILE_LANGUAGE:C>:${opt}>")
endforeach()
set_target_properties(beamlet_backends PROPERTIES COMPILE_OPTIONS "${beamlet_c_opts}")
target_compile_options(beamlet_backends PRIVATE
  $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra --expt-relaxed-constexpr -lineinfo>)
if(BEAMLET_WERROR)
  target_compile_options(beamlet_backends PRIVATE
    $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Werror --Werror=all-warnings>)
endif()

target_include_directories(beamlet_backends SYSTEM PRIVATE ${CUDNN_INCLUDE_DIR})
# Static cudart: the binaries do not depend on where libcudart.so lives (the GPU machine has
# several); it loads libcuda.so.1 itself on first use. cuBLAS and cuDNN are not linked: linking
# them cost every process, CPU-only runs included, ~80 ms of start-up and ~150 MB (libcublasLt
# is 540 MB), and a binary that could not start without them. cuda_libs.c dlopens them when a
# CUDA device is first opened; only their headers are needed here.
target_link_libraries(beamlet_backends PUBLIC CUDA::cudart_static ${CMAKE_DL_LIBS})
# Where to look after the SONAME search: the files found now (the SONAME first, so that
# LD_LIBRARY_PATH and the run path below can choose; then the configured file itself).
set_property(SOURCE ${CMAKE_SOURCE_DIR}/src/backends/cuda/cuda_libs.c APPEND PROPERTY
  COMPILE_DEFINITIONS "BEAMLET_CUDNN_CONFIGURED_PATH=\"${CUDNN_LIBRARY}\""
                      "BEAMLET_CUBLAS_CONFIGURED_PATH=\"${CUDA_cublas_LIBRARY}\"")
# dlopen by SONAME searches the calling object's run path: each executable's (the layers are
# static), or libbeamlet.so's (cmake/layers.cmake gives it these options too). CMake leaves the
# toolkit's lib directory out of run paths (an implicit link directory), which works only where
# ldconfig knows it; name both folders explicitly.
get_filename_component(BEAMLET_CUDNN_LIBDIR ${CUDNN_LIBRARY} DIRECTORY)
target_link_options(beamlet_backends PUBLIC
  "LINKER:-rpath,${CUDAToolkit_LIBRARY_DIR}" "LINKER:-rpath,${BEAMLET_CUDNN_LIBDIR}")
target_compile_definitions(beamlet_backends PUBLIC BEAMLET_HAVE_CUDA=1)
