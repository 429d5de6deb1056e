/* The model's insides, shared by the builder (resnet.c), the executor (model.c) and the
 * checkpoint code: a list of parameters, a list of values (activations) and a list of nodes
 * in execution order, each node reading values and writing one new value. */
#ifndef BEAMLET_NN_MODEL_INTERNAL_H
#define BEAMLET_NN_MODEL_INTERNAL_H

#include "beamlet/nn.h"

#define BL_MODEL_MAX_PARAMS 512
#define BL_MODEL_MAX_NODES 256
#define BL_NAME_MAX 64

typedef enum node_kind {
    NODE_CONV = 0,
    NODE_BN,
    NODE_MAXPOOL,
    NODE_GAP,
    NODE_LINEAR
} node_kind;

typedef struct node {
    node_kind kind;
    int in;       /* value read */
    int residual; /* BN: value added before the ReLU, or -1 */
    int out;      /* value written */
    bool relu;    /* BN: ReLU after the residual add */
    bl_conv2d_params conv;
    bl_pool_params pool;
    int weight, bias;                 /* parameter indices (conv/linear weight, BN gamma/beta) */
    int running_mean, running_var;    /* BN buffers */
    bl_tensor save_mean, save_invstd; /* BN: batch statistics saved for backward */
    /* Inference: a convolution followed by its batch norm runs as one convolution with folded
     * weights; `fused_bn` is that BN node (or -1), and the BN node is then skipped. */
    int fused_bn;
    bl_tensor folded_w, folded_b;
} node;

/* Shape of one value per image: (C, H, W), or (C) for 2-D values. */
typedef struct value {
    int c, h, w;
    bool is_2d;
    bl_tensor t, grad; /* views planned for max_batch; resized per call */
} value;

typedef struct param {
    char name[BL_NAME_MAX];
    bl_param_info info;
    int ndim;
    int64_t shape[4];
    int64_t offset; /* in floats, within the weights or the buffers allocation */
} param;

struct bl_model {
    bl_device *dev;
    bl_resnet_config cfg;
    param params[BL_MODEL_MAX_PARAMS];
    int nparams;
    node nodes[BL_MODEL_MAX_NODES];
    int nnodes;
    value values[BL_MODEL_MAX_NODES + 1];
    int nvalues;
    int logits_value;
    int64_t batches_tracked;

    float *weights, *grads, *buffers; /* device allocations */
    int64_t nweights, nbuffers;

    /* Planned memory. */
    int max_batch, height, width;
    bool planned, planned_training;
    void *activations, *activation_grads, *stats, *folded;
    size_t activation_bytes, activation_grad_bytes, stat_bytes;
    bl_tensor grad_scratch[2]; /* where a second gradient for a value is formed before adding */
    bl_tensor loss_grad;       /* dlogits */
    bool folded_valid;
    int current_batch;
    bool forward_was_train;
};

/* Registers a parameter or buffer and returns its index; offsets are assigned in order. */
int bl_model_add_param(bl_model *m, const char *name, bl_param_kind kind, int ndim, const int64_t *shape);
/* Adds a node writing a new value with the given per-image shape; returns the node index. */
int bl_model_add_node(bl_model *m, node n, int c, int h, int w, bool is_2d);
/* Allocates the parameter storage once every parameter is registered. */
bl_status bl_model_alloc_params(bl_model *m);
/* Tells the device that the planned activations, their gradients and the batch statistics are
 * no longer needed (bl_device_discard), the logits excepted when asked: inside a program, XLA
 * then keeps them in the program instead of storing every one. */
void bl_model_discard_scratch(bl_model *m, bool keep_logits);

#endif
