/* Calls into cuDNN and cuBLAS go through pointers that cuda_libs_load() fills (cuda_libs.h
 * says why). After the vendor headers, each function name becomes a macro for its pointer, so
 * `cudnnCreate(&h)` in the backend's C files compiles unchanged into a call through
 * cuda_fn_cudnnCreate, checked against the header's own prototype (__typeof__). Only C host
 * files include this (through cuda_internal.h); the .cu kernels call neither library.
 *
 * Nothing here may be called before cuda_libs_load() has succeeded: the CUDA device's open
 * does that first, and so does every entry point that reaches these functions without an
 * open device (bl_cuda_versions_get). */
#ifndef BEAMLET_CUDA_LIBS_CALLS_H
#define BEAMLET_CUDA_LIBS_CALLS_H

#ifdef __cplusplus
#error "cuda_libs_calls.h is for the backend's C files"
#endif

#include <cublas_v2.h>
#include <cudnn.h>

#include "backends/cuda/cuda_libs.h"

#define CUDA_LIBS_DECLARE(name) extern __typeof__(name) *cuda_fn_##name;
CUDA_LIBS_CUDNN_FUNCTIONS(CUDA_LIBS_DECLARE)
CUDA_LIBS_CUBLAS_FUNCTIONS(CUDA_LIBS_DECLARE)
#undef CUDA_LIBS_DECLARE

/* One line per function in cuda_libs.h's lists (the preprocessor cannot generate #defines).
 * cublas_v2.h maps cublasCreate to cublasCreate_v2, which then lands here. */
#define cudnnGetVersion (*cuda_fn_cudnnGetVersion)
#define cudnnGetErrorString (*cuda_fn_cudnnGetErrorString)
#define cudnnGetLastErrorString (*cuda_fn_cudnnGetLastErrorString)
#define cudnnCreate (*cuda_fn_cudnnCreate)
#define cudnnDestroy (*cuda_fn_cudnnDestroy)
#define cudnnSetStream (*cuda_fn_cudnnSetStream)
#define cudnnCreateTensorDescriptor (*cuda_fn_cudnnCreateTensorDescriptor)
#define cudnnDestroyTensorDescriptor (*cuda_fn_cudnnDestroyTensorDescriptor)
#define cudnnSetTensor4dDescriptor (*cuda_fn_cudnnSetTensor4dDescriptor)
#define cudnnCreateFilterDescriptor (*cuda_fn_cudnnCreateFilterDescriptor)
#define cudnnDestroyFilterDescriptor (*cuda_fn_cudnnDestroyFilterDescriptor)
#define cudnnSetFilter4dDescriptor (*cuda_fn_cudnnSetFilter4dDescriptor)
#define cudnnCreateConvolutionDescriptor (*cuda_fn_cudnnCreateConvolutionDescriptor)
#define cudnnDestroyConvolutionDescriptor (*cuda_fn_cudnnDestroyConvolutionDescriptor)
#define cudnnSetConvolution2dDescriptor (*cuda_fn_cudnnSetConvolution2dDescriptor)
#define cudnnSetConvolutionMathType (*cuda_fn_cudnnSetConvolutionMathType)
#define cudnnGetConvolutionForwardAlgorithm_v7 (*cuda_fn_cudnnGetConvolutionForwardAlgorithm_v7)
#define cudnnGetConvolutionBackwardDataAlgorithm_v7 (*cuda_fn_cudnnGetConvolutionBackwardDataAlgorithm_v7)
#define cudnnGetConvolutionBackwardFilterAlgorithm_v7 (*cuda_fn_cudnnGetConvolutionBackwardFilterAlgorithm_v7)
#define cudnnFindConvolutionForwardAlgorithmEx (*cuda_fn_cudnnFindConvolutionForwardAlgorithmEx)
#define cudnnFindConvolutionBackwardDataAlgorithmEx (*cuda_fn_cudnnFindConvolutionBackwardDataAlgorithmEx)
#define cudnnFindConvolutionBackwardFilterAlgorithmEx (*cuda_fn_cudnnFindConvolutionBackwardFilterAlgorithmEx)
#define cudnnGetConvolutionForwardWorkspaceSize (*cuda_fn_cudnnGetConvolutionForwardWorkspaceSize)
#define cudnnGetConvolutionBackwardDataWorkspaceSize (*cuda_fn_cudnnGetConvolutionBackwardDataWorkspaceSize)
#define cudnnGetConvolutionBackwardFilterWorkspaceSize                                                       \
    (*cuda_fn_cudnnGetConvolutionBackwardFilterWorkspaceSize)
#define cudnnConvolutionForward (*cuda_fn_cudnnConvolutionForward)
#define cudnnConvolutionBackwardData (*cuda_fn_cudnnConvolutionBackwardData)
#define cudnnConvolutionBackwardFilter (*cuda_fn_cudnnConvolutionBackwardFilter)

#define cublasGetProperty (*cuda_fn_cublasGetProperty)
#define cublasGetStatusName (*cuda_fn_cublasGetStatusName)
#define cublasGetStatusString (*cuda_fn_cublasGetStatusString)
#define cublasCreate_v2 (*cuda_fn_cublasCreate_v2)
#define cublasDestroy_v2 (*cuda_fn_cublasDestroy_v2)
#define cublasSetStream_v2 (*cuda_fn_cublasSetStream_v2)
#define cublasSetWorkspace_v2 (*cuda_fn_cublasSetWorkspace_v2)
#define cublasSetMathMode (*cuda_fn_cublasSetMathMode)
#define cublasSetPointerMode_v2 (*cuda_fn_cublasSetPointerMode_v2)
#define cublasGemmEx (*cuda_fn_cublasGemmEx)

#endif
