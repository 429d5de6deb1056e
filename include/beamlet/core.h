/* beamlet core: the layer everything else stands on.
 *
 * Status codes with a thread-local error message (library code never exits), log levels,
 * element types, an arena allocator, a seeded deterministic RNG, a monotonic timer and a
 * terminal progress bar. Nothing here knows about tensors, models or pipelines. */
#ifndef BEAMLET_CORE_H
#define BEAMLET_CORE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status and errors ------------------------------------------------------------------ */

typedef enum bl_status {
    BL_OK = 0,
    BL_ERR_INVALID_ARG, /* the caller passed something malformed */
    BL_ERR_OUT_OF_MEMORY,
    BL_ERR_IO,          /* open/read/write/rename failed */
    BL_ERR_FORMAT,      /* a file or string does not follow its format */
    BL_ERR_UNSUPPORTED, /* valid request this build or backend cannot do */
    BL_ERR_NOT_FOUND,
    BL_ERR_DEVICE,   /* a device or its driver/library reported a failure */
    BL_ERR_INTERNAL, /* a broken invariant inside beamlet */
} bl_status;

/* Sets the calling thread's error message (printf-style) and returns `status`, so that
 * `return bl_error(BL_ERR_IO, "%s: %s", path, strerror(errno));` reads naturally. */
bl_status bl_error(bl_status status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefixes context to the current message: "context: previous message". Returns `status`. */
bl_status bl_error_context(bl_status status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The calling thread's last message ("" when none). Valid until the next bl_error call. */
const char *bl_last_error(void);
void bl_clear_error(void);
const char *bl_status_name(bl_status status);
/* Whether a failure may pass when tried again, so a runner retries it: an I/O error (a network
 * filesystem's hiccup, a disk that was full), running out of memory, a device's failure (a
 * retry sets the device up afresh). Invalid arguments, unsupported requests, missing or
 * malformed files and broken invariants fail the same way every time and are not retried. */
bool bl_status_transient(bl_status status);
/* The status for a failed system call's errno on a path: a missing file or folder is
 * BL_ERR_NOT_FOUND, one that can never be used as given (permissions, read-only, a file where
 * a folder should be) BL_ERR_INVALID_ARG, ENOMEM BL_ERR_OUT_OF_MEMORY, the rest BL_ERR_IO. */
bl_status bl_errno_status(int err);

/* Propagate a failure unchanged. */
#define BL_TRY(expr)                                                                                         \
    do {                                                                                                     \
        bl_status bl_try_status_ = (expr);                                                                   \
        if (bl_try_status_ != BL_OK) return bl_try_status_;                                                  \
    } while (0)

/* For broken invariants only: prints and aborts. */
#define BL_ASSERT(cond)                                                                                      \
    do {                                                                                                     \
        if (!(cond)) bl_panic(__FILE__, __LINE__, #cond);                                                    \
    } while (0)
#ifdef __cplusplus
[[noreturn]] void bl_panic(const char *file, int line, const char *what);
#else
_Noreturn void bl_panic(const char *file, int line, const char *what);
#endif

/* ---- logging ---------------------------------------------------------------------------- */

typedef enum bl_log_level {
    BL_LOG_DEBUG = 0,
    BL_LOG_INFO,
    BL_LOG_WARN,
    BL_LOG_ERROR,
    BL_LOG_OFF,
} bl_log_level;

/* The threshold starts from BEAMLET_LOG (debug|info|warn|error|off), default info. */
void bl_log_set_level(bl_log_level level);
bl_log_level bl_log_get_level(void);
void bl_log(bl_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define bl_log_debug(...) bl_log(BL_LOG_DEBUG, __VA_ARGS__)
#define bl_log_info(...) bl_log(BL_LOG_INFO, __VA_ARGS__)
#define bl_log_warn(...) bl_log(BL_LOG_WARN, __VA_ARGS__)
#define bl_log_error(...) bl_log(BL_LOG_ERROR, __VA_ARGS__)

/* ---- element types ---------------------------------------------------------------------- */

typedef enum bl_dtype {
    BL_F32 = 0,
    BL_BF16,
    BL_F16,
    BL_U8,
    BL_I32,
    BL_I64,
    BL_DTYPE_COUNT
} bl_dtype;

size_t bl_dtype_size(bl_dtype dtype);
/* Lower-case name ("f32", "bf16", ...). */
const char *bl_dtype_name(bl_dtype dtype);
float bl_bf16_to_f32(uint16_t v);
uint16_t bl_f32_to_bf16(float v); /* round to nearest even; NaN stays NaN */
float bl_f16_to_f32(uint16_t v);
uint16_t bl_f32_to_f16(float v); /* round to nearest even; overflow gives inf */

/* Compute precision, as every --precision flag and config field spells it: "f32" or "bf16"
 * (f32 tensors either way; bf16 means the device convolves in bf16 with f32 accumulation, see
 * bl_device_set_precision). The one parser: strict, an unknown value is BL_ERR_INVALID_ARG
 * naming it and the valid ones. */
#define BL_PRECISION_NAMES "f32, bf16"
#define BL_PRECISION_FLAG_HELP                                                                               \
    "compute precision: f32, or bf16 (bf16 convolutions with f32 accumulation, on CPUs with "                \
    "AVX512-BF16 or AMX; refused elsewhere)"
bl_status bl_precision_parse(const char *text, bl_dtype *out);

/* ---- arena allocator -------------------------------------------------------------------- */

/* A bump allocator over one block: many allocations, one free. Used for plans and scratch
 * whose lifetime is a whole model or run, so steps never call malloc. */
typedef struct bl_arena bl_arena;
bl_status bl_arena_new(size_t capacity, bl_arena **out);
void bl_arena_free(bl_arena *arena);
/* Returns NULL (and sets the error) when the arena is full. align must be a power of two. */
void *bl_arena_alloc(bl_arena *arena, size_t size, size_t align);
void bl_arena_reset(bl_arena *arena);
size_t bl_arena_used(const bl_arena *arena);
size_t bl_arena_capacity(const bl_arena *arena);

/* A host buffer for large data (weights, staging): 64-byte aligned, and from 2 MiB up backed
 * by transparent huge pages where the kernel allows, so it faults in quickly. Free with free(). */
void *bl_alloc_big(size_t bytes);

/* ---- deterministic random numbers ------------------------------------------------------- */

/* xoshiro256** seeded through splitmix64: the same seed gives the same stream everywhere.
 * The state is a plain struct so it can be checkpointed and restored. */
typedef struct bl_rng {
    uint64_t s[4];
} bl_rng;

void bl_rng_seed(bl_rng *rng, uint64_t seed);
uint64_t bl_rng_u64(bl_rng *rng);
uint32_t bl_rng_u32(bl_rng *rng);
/* Uniform in [0, n); n > 0, without modulo bias. */
uint64_t bl_rng_below(bl_rng *rng, uint64_t n);
/* Uniform in [0, 1). */
double bl_rng_uniform(bl_rng *rng);
/* Standard normal (Box-Muller). */
double bl_rng_normal(bl_rng *rng);
/* An independent stream derived from this one and a label (e.g. a worker or epoch index). */
bl_rng bl_rng_fork(const bl_rng *rng, uint64_t label);

/* Bulk fills for weight initialization, parallel over fixed blocks, each block with its own
 * stream derived from (seed, stream, block index): the same values for any thread count.
 * Normals come from the ziggurat method; uniform values lie in [lo, hi). */
void bl_fill_normal_f32(float *dst, int64_t n, uint64_t seed, uint64_t stream, double mean, double std);
void bl_fill_uniform_f32(float *dst, int64_t n, uint64_t seed, uint64_t stream, double lo, double hi);

/* ---- compute threads -------------------------------------------------------------------- */

/* The budget runners give their workers (the local runner's threads, the MPI ranks of a node):
 * workers x threads <= cores, because oneDNN's and our own parallel loops wait for their
 * threads in spin barriers that collapse when the machine is oversubscribed. */

/* Cores this process may run on: its affinity mask (taskset, cpusets, mpirun's binding). */
int bl_cpu_cores(void);
/* Each of `workers` sharing `cores` gets cores / workers threads, at least 1, and no more than
 * OMP_NUM_THREADS when that is set; `requested` > 0 (the user's --threads_per_worker) wins. */
int bl_thread_budget(int cores, int workers, int requested);
/* Threads the calling thread's compute uses from now on (OpenMP's per-thread setting: the
 * parallel regions it starts, hence every CPU op it issues). Set before a worker's first op. */
void bl_compute_threads_set(int n);
int bl_compute_threads(void);

/* ---- time ------------------------------------------------------------------------------- */

/* Seconds on a monotonic clock (arbitrary origin). */
double bl_time_now(void);

/* ---- progress bar ----------------------------------------------------------------------- */

/* One line on stderr redrawn in place when stderr is a terminal; otherwise a line every
 * ~10% so logs stay readable. Not thread-safe: drive it from one thread. */
typedef struct bl_progress {
    char label[48];
    int64_t total;
    int64_t done;
    double start;
    double last_draw;
    int last_decile;
    bool tty;
    char suffix[96];
} bl_progress;

void bl_progress_begin(bl_progress *p, const char *label, int64_t total);
/* Advances by `n` and sets an optional suffix (e.g. "loss 1.23"); NULL keeps the old one. */
void bl_progress_step(bl_progress *p, int64_t n, const char *suffix);
void bl_progress_end(bl_progress *p);

/* ---- files ------------------------------------------------------------------------------ */

/* Writes `size` bytes to `path` atomically: to a unique "<path>.tmp.XXXXXX", flushed and
 * fsync'ed, then renamed into place and the folder fsync'ed. A failure leaves no file at
 * `path` changed and no temp file behind. */
bl_status bl_file_write_atomic(const char *path, const void *data, size_t size);
/* Creates a directory and its parents (like mkdir -p); existing directories are fine. */
bl_status bl_mkdirs(const char *path);
bool bl_file_exists(const char *path);
/* Reads a whole file into a malloc'ed buffer (caller frees). */
bl_status bl_file_read_all(const char *path, void **data, size_t *size);
/* The folder holding the running program (from /proc/self/exe), to find files installed
 * beside it wherever it is run from. */
bl_status bl_exe_dir(char *buf, size_t size);

#ifdef __cplusplus
}
#endif
#endif
