/* Recording a step as a CUDA graph and replaying it (beamlet/cuda.h).
 *
 * Recording uses stream capture on the handle's stream in thread-local mode: other threads
 * (other pipeline workers with their own devices) may keep allocating while this one records.
 * Optimizer updates seen while recording are remembered with their arguments, so that their
 * nodes in the instantiated graph can be given new hyperparameters before a launch with
 * cudaGraphExecKernelNodeSetParams, which leaves launches already enqueued untouched. */
#include <stdlib.h>
#include <string.h>

#include "backends/backends.h"
#include "backends/cuda/cuda_internal.h"
#include "beamlet/cuda.h"

struct bl_cuda_graph {
    bl_device *dev;
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    int nupdates;
    cuda_opt_record updates[CUDA_MAX_RECORDED_UPDATES];
};

static bl_status graph_ctx(bl_device *dev, const char *what, cuda_ctx **out) {
    if (!dev || dev->backend != bl_backend_cuda())
        return bl_error(BL_ERR_INVALID_ARG, "%s: %s is not a CUDA device", what, dev ? dev->name : "(null)");
    *out = dev->ctx;
    CU_TRY(cudaSetDevice((*out)->index));
    return BL_OK;
}

bl_status bl_cuda_graph_begin(bl_device *dev) {
    cuda_ctx *c = NULL;
    BL_TRY(graph_ctx(dev, "bl_cuda_graph_begin", &c));
    if (cuda_capturing(c))
        return bl_error(BL_ERR_INVALID_ARG, "%s: a graph is already being recorded", dev->name);
    c->nrecorded = 0;
    CU_TRY(cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal));
    return BL_OK;
}

bl_status bl_cuda_graph_end(bl_device *dev, bl_cuda_graph **out) {
    *out = NULL;
    cuda_ctx *c = NULL;
    BL_TRY(graph_ctx(dev, "bl_cuda_graph_end", &c));
    if (!cuda_capturing(c)) return bl_error(BL_ERR_INVALID_ARG, "%s: no graph is being recorded", dev->name);
    cudaGraph_t graph = NULL;
    /* Ends the capture even when an op failed inside it (the capture is then invalid and the
     * call reports it), so the stream is usable again either way. */
    cudaError_t e = cudaStreamEndCapture(c->stream, &graph);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        if (graph) (void)cudaGraphDestroy(graph);
        c->nrecorded = 0;
        return bl_error(BL_ERR_DEVICE,
                        "%s: recording failed: cudaStreamEndCapture: %s (an op "
                        "inside the recording allocated, synchronized or failed)",
                        dev->name, cudaGetErrorString(e));
    }
    bl_cuda_graph *g = calloc(1, sizeof *g);
    if (!g) {
        (void)cudaGraphDestroy(graph);
        return bl_error(BL_ERR_OUT_OF_MEMORY, "bl_cuda_graph_end: graph handle");
    }
    g->dev = dev;
    g->graph = graph;
    g->nupdates = c->nrecorded;
    memcpy(g->updates, c->recorded, sizeof(cuda_opt_record) * (size_t)c->nrecorded);
    c->nrecorded = 0;
    e = cudaGraphInstantiate(&g->exec, graph, 0);
    if (e != cudaSuccess) {
        bl_status s = cuda_fail_rt(e, "cudaGraphInstantiate", __FILE__, __LINE__);
        bl_cuda_graph_free(g);
        return s;
    }
    /* Uploading now keeps the first launch from paying for it inside a timed step. */
    e = cudaGraphUpload(g->exec, c->stream);
    if (e != cudaSuccess) {
        bl_status s = cuda_fail_rt(e, "cudaGraphUpload", __FILE__, __LINE__);
        bl_cuda_graph_free(g);
        return s;
    }
    *out = g;
    return BL_OK;
}

bl_status bl_cuda_graph_launch(bl_cuda_graph *g) {
    if (!g) return bl_error(BL_ERR_INVALID_ARG, "bl_cuda_graph_launch: no graph");
    cuda_ctx *c = g->dev->ctx;
    CU_TRY(cudaSetDevice(c->index));
    CU_TRY(cudaGraphLaunch(g->exec, c->stream));
    return BL_OK;
}

void bl_cuda_graph_free(bl_cuda_graph *g) {
    if (!g) return;
    cuda_ctx *c = g->dev->ctx;
    (void)cudaSetDevice(c->index);
    /* A graph still running must finish before its resources go. */
    (void)cudaStreamSynchronize(c->stream);
    if (g->exec) (void)cudaGraphExecDestroy(g->exec);
    if (g->graph) (void)cudaGraphDestroy(g->graph);
    (void)cudaGetLastError();
    free(g);
}

int bl_cuda_graph_optimizer_count(const bl_cuda_graph *g) { return g ? g->nupdates : 0; }

/* Gives node `r` the argument list `args` (the hyperparameters first, then the buffers, as the
 * kernel was launched), keeping its launch shape. */
static bl_status set_node(bl_cuda_graph *g, const cuda_opt_record *r, void **args, const void *kernel) {
    struct cudaKernelNodeParams kp;
    memset(&kp, 0, sizeof kp);
    CU_TRY(cudaGraphKernelNodeGetParams(r->node, &kp));
    /* The node is ours by construction (the stream's frontier right after our launch); the
     * function check is a second look, which only warns in case a runtime reports the kernel
     * under another address. */
    if (kp.func != kernel)
        bl_log_warn("%s: recorded optimizer node reports function %p, expected %p", g->dev->name, kp.func,
                    kernel);
    kp.kernelParams = args;
    kp.extra = NULL;
    CU_TRY(cudaGraphExecKernelNodeSetParams(g->exec, r->node, &kp));
    return BL_OK;
}

static bl_status check_index(const bl_cuda_graph *g, int index, int kind, const char *what) {
    if (!g) return bl_error(BL_ERR_INVALID_ARG, "%s: no graph", what);
    int found = 0;
    for (int i = 0; i < g->nupdates; i++) found += g->updates[i].kind == kind;
    if (found == 0 || index < -1 || index >= found)
        return bl_error(BL_ERR_INVALID_ARG, "%s: update %d requested, graph recorded %d", what, index, found);
    return BL_OK;
}

bl_status bl_cuda_graph_set_sgd(bl_cuda_graph *g, int index, const bl_sgd_params *p) {
    BL_TRY(check_index(g, index, 0, "bl_cuda_graph_set_sgd"));
    cuda_sgd_hyper h = {p->lr, p->momentum, p->weight_decay, p->nesterov ? 1 : 0};
    int seen = 0;
    for (int i = 0; i < g->nupdates; i++) {
        cuda_opt_record *r = &g->updates[i];
        if (r->kind != 0) continue;
        if (index == -1 || index == seen) {
            /* sgd_kernel(h, param, grad, momentum_buf, n) */
            void *args[5] = {&h, &r->param, &r->grad, &r->state1, &r->n};
            BL_TRY(set_node(g, r, args, cuda_sgd_kernel()));
        }
        seen++;
    }
    return BL_OK;
}

bl_status bl_cuda_graph_set_adamw(bl_cuda_graph *g, int index, const bl_adamw_params *p) {
    BL_TRY(check_index(g, index, 1, "bl_cuda_graph_set_adamw"));
    if (p->step < 1) return bl_error(BL_ERR_INVALID_ARG, "bl_cuda_graph_set_adamw: step < 1");
    cuda_adamw_hyper h = cuda_adamw_hyper_of(p);
    int seen = 0;
    for (int i = 0; i < g->nupdates; i++) {
        cuda_opt_record *r = &g->updates[i];
        if (r->kind != 1) continue;
        if (index == -1 || index == seen) {
            /* adamw_kernel(h, param, grad, exp_avg, exp_avg_sq, n) */
            void *args[6] = {&h, &r->param, &r->grad, &r->state1, &r->state2, &r->n};
            BL_TRY(set_node(g, r, args, cuda_adamw_kernel()));
        }
        seen++;
    }
    return BL_OK;
}
