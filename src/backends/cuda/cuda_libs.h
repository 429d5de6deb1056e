/* cuDNN and cuBLAS, loaded with dlopen when a CUDA device is first opened instead of linked.
 *
 * Linking them costs every beamlet process ~70-100 ms of start-up and ~150 MB of memory
 * (libcublasLt alone is 540 MB of relocations and page faults), even a CPU-only run that never
 * touches the GPU, and a linked binary cannot start at all where they are missing. Loaded
 * lazily, they cost nothing until a device is opened, and their absence becomes an ordinary
 * error naming the library. The CUDA runtime stays statically linked (cudart_static, which
 * itself loads libcuda.so.1 on first use).
 *
 * This header has no vendor types, so tests can include it without cuDNN's include folder.
 * cuda_libs_calls.h (included by cuda_internal.h) turns the backend's calls into calls through
 * the loaded pointers. */
#ifndef BEAMLET_CUDA_LIBS_H
#define BEAMLET_CUDA_LIBS_H

#include <stdbool.h>

#include "beamlet/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Every cuDNN and cuBLAS function the backend calls, by the name the library exports
 * (cublas_v2.h renames cublasCreate to cublasCreate_v2 and so on; `nm -D` shows the real
 * names). A call to a function missing here fails to link ("undefined reference"): add it
 * here and a redirect line to cuda_libs_calls.h. */
#define CUDA_LIBS_CUDNN_FUNCTIONS(X)                                                                         \
    X(cudnnGetVersion)                                                                                       \
    X(cudnnGetErrorString)                                                                                   \
    X(cudnnGetLastErrorString)                                                                               \
    X(cudnnCreate)                                                                                           \
    X(cudnnDestroy)                                                                                          \
    X(cudnnSetStream)                                                                                        \
    X(cudnnCreateTensorDescriptor)                                                                           \
    X(cudnnDestroyTensorDescriptor)                                                                          \
    X(cudnnSetTensor4dDescriptor)                                                                            \
    X(cudnnCreateFilterDescriptor)                                                                           \
    X(cudnnDestroyFilterDescriptor)                                                                          \
    X(cudnnSetFilter4dDescriptor)                                                                            \
    X(cudnnCreateConvolutionDescriptor)                                                                      \
    X(cudnnDestroyConvolutionDescriptor)                                                                     \
    X(cudnnSetConvolution2dDescriptor)                                                                       \
    X(cudnnSetConvolutionMathType)                                                                           \
    X(cudnnGetConvolutionForwardAlgorithm_v7)                                                                \
    X(cudnnGetConvolutionBackwardDataAlgorithm_v7)                                                           \
    X(cudnnGetConvolutionBackwardFilterAlgorithm_v7)                                                         \
    X(cudnnFindConvolutionForwardAlgorithmEx)                                                                \
    X(cudnnFindConvolutionBackwardDataAlgorithmEx)                                                           \
    X(cudnnFindConvolutionBackwardFilterAlgorithmEx)                                                         \
    X(cudnnGetConvolutionForwardWorkspaceSize)                                                               \
    X(cudnnGetConvolutionBackwardDataWorkspaceSize)                                                          \
    X(cudnnGetConvolutionBackwardFilterWorkspaceSize)                                                        \
    X(cudnnConvolutionForward)                                                                               \
    X(cudnnConvolutionBackwardData)                                                                          \
    X(cudnnConvolutionBackwardFilter)

#define CUDA_LIBS_CUBLAS_FUNCTIONS(X)                                                                        \
    X(cublasGetProperty)                                                                                     \
    X(cublasGetStatusName)                                                                                   \
    X(cublasGetStatusString)                                                                                 \
    X(cublasCreate_v2)                                                                                       \
    X(cublasDestroy_v2)                                                                                      \
    X(cublasSetStream_v2)                                                                                    \
    X(cublasSetWorkspace_v2)                                                                                 \
    X(cublasSetMathMode)                                                                                     \
    X(cublasSetPointerMode_v2)                                                                               \
    X(cublasGemmEx)

/* Loads cuDNN and cuBLAS and resolves every function above, once per process (thread-safe).
 * Each library is looked for by its SONAME (libcudnn.so.9, libcublas.so.13: the majors of the
 * headers built against) through the usual search (LD_LIBRARY_PATH, the binaries' run path,
 * ldconfig), then at the file CMake found at configure time. BEAMLET_CUDNN_LIBRARY and
 * BEAMLET_CUBLAS_LIBRARY, when set, name the file to load instead (and nothing else is tried).
 * The outcome is remembered: later calls return the same status and message. Failures are
 * BL_ERR_NOT_FOUND (cannot open: the message has dlerror's words and what to install or set)
 * or BL_ERR_UNSUPPORTED (a function missing, or another major version). */
bl_status cuda_libs_load(void);

/* For tests: the functions in the lists above (cuDNN's first), and whether each one's pointer
 * is set (all are after a successful load, none after a failed one). */
int cuda_libs_count(void);
const char *cuda_libs_name(int i);
bool cuda_libs_resolved(int i);
/* The file each library was loaded from ("" before a successful load); lib 0 cuDNN, 1 cuBLAS. */
const char *cuda_libs_path(int lib);

#ifdef __cplusplus
}
#endif
#endif
