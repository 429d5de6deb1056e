/* The workloads of `beamlet bench`, kept apart from its flag handling and JSON: ResNet-18
 * throughput on one device (inference with batch norm folded, or a training step), time to
 * first prediction as a child process sees it, time to accuracy through bl_train, and the
 * machine and versions a results file records. */
#ifndef BEAMLET_APP_BENCH_WORKLOADS_H
#define BEAMLET_APP_BENCH_WORKLOADS_H

#include "beamlet/ml.h"
#include "beamlet/nn.h"

typedef struct bench_throughput {
    int batch, steps; /* timed steps (after warm-up) */
    double seconds;   /* wall time of the timed steps, device synchronized */
    double ms_per_step, img_per_s;
} bench_throughput;

typedef struct bench_schedule {
    int warmup_steps, min_steps;
    double min_seconds; /* keep stepping until both minimums are met */
    bool progress;      /* a progress bar on stderr */
} bench_schedule;

/* Throughput of a ResNet-18 (width 64, 3 input channels) on `dev` for images of hw x hw with
 * the given stem and class count: a folded-BN inference forward, or a training step (forward,
 * loss, backward, SGD with Nesterov momentum). Inputs are seeded random data already on the
 * device, so the figure is the model's, without data loading. */
bl_status bench_resnet18_throughput(bl_device *dev, bl_resnet_stem stem, int hw, int classes, int batch,
                                    bool train, const bench_schedule *sched, const char *label,
                                    bench_throughput *out);

/* Runs `exe infer ...` for one Fashion-MNIST image in a child process (stdout and stderr
 * discarded) and measures from just before the spawn to the child's exit: process start,
 * library set-up, reading the data and the model, one prediction, writing it. `infer_device`
 * is what `beamlet infer --device` takes ("cpu", "gpu"). *exit_code gets the child's status. */
bl_status bench_first_prediction(const char *exe, const char *infer_device, const char *weights,
                                 const char *out_dir, double *seconds, int *exit_code);

typedef struct bench_tta {
    bool reached;
    int epoch;       /* first epoch whose test accuracy reached the target (0 = none) */
    double seconds;  /* training + evaluation time up to the end of that epoch */
    double accuracy; /* test accuracy at that epoch (or the last, when not reached) */
    int epochs_run;
} bench_tta;

/* Trains `cfg` with bl_train and reads its metrics.jsonl to find the first epoch at or above
 * `target` test accuracy. */
bl_status bench_time_to_accuracy(const bl_training_config *cfg, double target, bench_tta *out);

/* What a results file says about where it ran: "model name" from /proc/cpuinfo, logical CPUs,
 * memory in GB, kernel release, host name; "" / 0 where unknown. */
typedef struct bench_machine {
    char cpu_model[128], kernel[64], host[64];
    int logical_cpus;
    double memory_gb;
} bench_machine;
void bench_machine_get(bench_machine *m);

/* The short commit of the working tree ("abc1234", "abc1234-dirty"), or "" without git. */
void bench_git_commit(char *buf, size_t n);

#endif
