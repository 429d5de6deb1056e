/* The pipeline API without running much: coders (round trips, truncated and malformed bytes,
 * determinism), options (unknown flags, bad values), resource hints (every malformed form,
 * positions, layering), graph construction errors and the text/dot printing. */
#include "pipelines.h"

static void roundtrip(const bl_coder *c, const void *v, const char *json) {
    bl_buf b = {0};
    CHECK_OK(bl_coder_encode(c, v, &b));
    void *back = NULL;
    CHECK_OK(bl_coder_decode(c, b.data, b.len, &back));
    bl_buf j = {0};
    CHECK_OK(bl_coder_to_json(c, back, &j));
    CHECK_MSG(j.data && strcmp((char *)j.data, json) == 0, "%s: %s vs %s", bl_coder_name(c),
              j.data ? (char *)j.data : "", json);
    /* Every strict prefix is a truncated element. */
    for (size_t n = 0; n < b.len; n++) {
        void *x = NULL;
        bl_status s = bl_coder_decode(c, b.data, n, &x);
        CHECK_MSG(s == BL_ERR_FORMAT, "%s: prefix %zu decoded", bl_coder_name(c), n);
        bl_coder_free_value(c, x);
    }
    bl_coder_free_value(c, back);
    bl_buf_free(&b);
    bl_buf_free(&j);
}

static void test_coders(void) {
    int64_t big = -1234567890123ll, zero = 0;
    double d = -2.5;
    uint8_t raw[3] = {0, 255, 7};
    bl_bytes bytes = {3, raw};
    roundtrip(bl_coder_int64(), &big, "-1234567890123");
    roundtrip(bl_coder_int64(), &zero, "0");
    roundtrip(bl_coder_double(), &d, "-2.5");
    roundtrip(bl_coder_string(), "tab\there \"q\"", "\"tab\\u0009here \\\"q\\\"\"");
    roundtrip(bl_coder_bytes(), &bytes, "\"00ff07\"");
    bl_kv kv = {"key", &big};
    roundtrip(bl_coder_kv(bl_coder_string(), bl_coder_int64()), &kv, "[\"key\", -1234567890123]");
    void *items[2] = {&big, &zero};
    bl_iter it = {2, items};
    roundtrip(bl_coder_iterable(bl_coder_int64()), &it, "[-1234567890123, 0]");
    CHECK(bl_coder_kv(bl_coder_string(), bl_coder_int64()) ==
          bl_coder_kv(bl_coder_string(), bl_coder_int64()));
    CHECK(bl_coder_is_deterministic(bl_coder_kv(bl_coder_string(), bl_coder_int64())));
    CHECK(!bl_coder_is_deterministic(bl_coder_kv(bl_coder_double(), bl_coder_int64())));
    CHECK(bl_coder_kv(NULL, bl_coder_int64()) == NULL);
    /* Trailing bytes and an iterable that claims more items than there are bytes. */
    uint8_t two[2] = {0x02, 0x04};
    void *x = NULL;
    CHECK_ERR(bl_coder_decode(bl_coder_int64(), two, 2, &x), BL_ERR_FORMAT, "1 trailing bytes");
    uint8_t lie[2] = {0x7f, 0x01};
    CHECK_ERR(bl_coder_decode(bl_coder_iterable(bl_coder_int64()), lie, 2, &x), BL_ERR_FORMAT,
              "claims 127 items");
    uint8_t nul[3] = {2, 'a', 0};
    CHECK_ERR(bl_coder_decode(bl_coder_string(), nul, 3, &x), BL_ERR_FORMAT, "NUL byte");
    uint8_t longvar[11];
    memset(longvar, 0xff, sizeof longvar);
    CHECK_ERR(bl_coder_decode(bl_coder_int64(), longvar, 11, &x), BL_ERR_FORMAT, "varint longer");
    bl_coder_fns incomplete = {"half", true, NULL, NULL, NULL, NULL, NULL};
    bl_coder *c;
    CHECK_ERR(bl_coder_new(&incomplete, &c), BL_ERR_INVALID_ARG, "needs encode, decode and free_value");
}

static void test_options(void) {
    bl_options *o;
    CHECK_OK(bl_options_new(&o));
    CHECK_OK(bl_options_add(o, "input", "in.txt", "where to read"));
    CHECK_ERR(bl_options_add(o, "input", "", ""), BL_ERR_INVALID_ARG, "defined twice");
    char *good[] = {"prog",
                    "--runner=local",
                    "--num_workers=3",
                    "--input=x.txt",
                    "--resource_hints=min_ram=1GB",
                    "--resource_hints=accelerator=type:t4;count:1"};
    CHECK_OK(bl_options_parse(o, 6, good));
    CHECK(strcmp(bl_options_get(o, "input"), "x.txt") == 0);
    int64_t n;
    CHECK_OK(bl_options_get_int(o, "num_workers", &n));
    CHECK(n == 3);
    bl_pipeline *p;
    CHECK_OK(bl_pipeline_new(o, &p));
    CHECK(strcmp(bl_pipeline_runner_name(p), "local") == 0 && bl_pipeline_num_workers(p) == 3);
    bl_pipeline_free(p);
    char *unknown[] = {"prog", "--num_wrokers=3"};
    CHECK_ERR(bl_options_parse(o, 2, unknown), BL_ERR_INVALID_ARG,
              "unknown option --num_wrokers; valid options:");
    CHECK(strstr(bl_last_error(), "--num_workers") && strstr(bl_last_error(), "--input") &&
          strstr(bl_last_error(), "--runner"));
    char *runner[] = {"prog", "--runner=spark"};
    CHECK_ERR(bl_options_parse(o, 2, runner), BL_ERR_INVALID_ARG,
              "unknown runner (valid: direct, local, mpi)");
    char *workers[] = {"prog", "--num_workers=many"};
    CHECK_ERR(bl_options_parse(o, 2, workers), BL_ERR_INVALID_ARG, "--num_workers=many: not an integer");
    char *neg[] = {"prog", "--num_workers=-1"};
    CHECK_ERR(bl_options_parse(o, 2, neg), BL_ERR_INVALID_ARG, "must be between 0 and 1024");
    char *hint[] = {"prog", "--resource_hints=accelerator=type:t4"};
    CHECK_ERR(bl_options_parse(o, 2, hint), BL_ERR_FORMAT, "--resource_hints: malformed resource hint");
    char *pos[] = {"prog", "input.txt"};
    CHECK_ERR(bl_options_parse(o, 2, pos), BL_ERR_INVALID_ARG, "is not an option");
    char *acc[] = {"prog", "--worker_accelerators=1,,2"};
    CHECK_ERR(bl_options_parse(o, 2, acc), BL_ERR_INVALID_ARG, "worker_accelerators");
    char *kinds[] = {"prog", "--worker_accelerators=tpu:1,gpu:2,3"};
    CHECK_OK(bl_options_parse(o, 2, kinds));
    char *npu[] = {"prog", "--worker_accelerators=1,npu:1"};
    CHECK_ERR(bl_options_parse(o, 2, npu), BL_ERR_INVALID_ARG,
              "--worker_accelerators=1,npu:1: 'npu:1': expected N, gpu:N or tpu:N");
    char *tpux[] = {"prog", "--worker_accelerators=tpu:x"};
    CHECK_ERR(bl_options_parse(o, 2, tpux), BL_ERR_INVALID_ARG, "not an integer");
    char *ram[] = {"prog", "--worker_ram=12XB"};
    CHECK_ERR(bl_options_parse(o, 2, ram), BL_ERR_FORMAT, "unknown size unit");
    char *stall[] = {"prog", "--stall_timeout_s=soon"};
    CHECK_ERR(bl_options_parse(o, 2, stall), BL_ERR_INVALID_ARG, "not a non-negative number");
    CHECK_ERR(bl_options_get_int(o, "nope", &n), BL_ERR_INVALID_ARG, "unknown option --nope");
    char *usage = bl_options_usage(o);
    CHECK(strstr(usage, "--runner") && strstr(usage, "where to read"));
    free(usage);
    bl_options_free(o);
}

/* Booleans take exactly true/false, 1/0 or yes/no (and a bare --flag is true); anything else
 * is refused naming the flag, never read as one or the other. */
static void test_options_strict_booleans(void) {
    bl_options *o;
    CHECK_OK(bl_options_new_plain(&o));
    CHECK_OK(bl_options_add(o, "allow_cpu_fallback", "false", "a boolean"));
    const char *yes[] = {"true", "1", "yes"}, *no[] = {"false", "0", "no"};
    for (int i = 0; i < 3; i++) {
        bool b = false;
        CHECK_OK(bl_options_set(o, "allow_cpu_fallback", yes[i]));
        CHECK_OK(bl_options_get_bool(o, "allow_cpu_fallback", &b));
        CHECK_MSG(b, "%s", yes[i]);
        CHECK_OK(bl_options_set(o, "allow_cpu_fallback", no[i]));
        CHECK_OK(bl_options_get_bool(o, "allow_cpu_fallback", &b));
        CHECK_MSG(!b, "%s", no[i]);
    }
    char *bare[] = {"prog", "--allow_cpu_fallback"};
    bool b = false;
    CHECK_OK(bl_options_parse(o, 2, bare));
    CHECK_OK(bl_options_get_bool(o, "allow_cpu_fallback", &b));
    CHECK(b);
    const char *bad[] = {"maybe", "", "TRUE", "Yes", "2", "-1", "on", "off", "t", "truex", " true"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char want[64];
        snprintf(want, sizeof want, "--allow_cpu_fallback=%s: not a boolean", bad[i]);
        CHECK_OK(bl_options_set(o, "allow_cpu_fallback", bad[i]));
        CHECK_ERR(bl_options_get_bool(o, "allow_cpu_fallback", &b), BL_ERR_INVALID_ARG, want);
    }
    bl_options_free(o);
}

/* Whether a flag was given, as opposed to left at its default: a program that takes a value
 * from elsewhere (the sweep's grid) can refuse a flag it would otherwise ignore. */
static void test_options_given(void) {
    bl_options *o;
    CHECK_OK(bl_options_new(&o));
    CHECK_OK(bl_options_add(o, "input", "in.txt", "where to read"));
    CHECK_OK(bl_options_add(o, "output", "", "where to write"));
    CHECK_OK(bl_options_set_default(o, "runner", "local")); /* a program's default is not a given flag */
    CHECK(!bl_options_given(o, "input") && !bl_options_given(o, "runner") && !bl_options_given(o, "output"));
    char *argv[] = {"prog", "--input=in.txt", "--num_workers=2"}; /* given, even at the default value */
    CHECK_OK(bl_options_parse(o, 3, argv));
    CHECK(bl_options_given(o, "input") && bl_options_given(o, "num_workers"));
    CHECK(!bl_options_given(o, "runner") && !bl_options_given(o, "output"));
    CHECK_OK(bl_options_set(o, "output", "out.txt"));
    CHECK(bl_options_given(o, "output"));
    char *bad[] = {"prog", "--runner=spark"}; /* a refused value leaves the flag as it was */
    CHECK_ERR(bl_options_parse(o, 2, bad), BL_ERR_INVALID_ARG, "unknown runner");
    CHECK(!bl_options_given(o, "runner"));
    CHECK(!bl_options_given(o, "nope") && !bl_options_given(NULL, "input"));
    bl_options_free(o);
}

static void test_hints(void) {
    bl_hints h;
    CHECK_OK(bl_hints_parse("accelerator=\"type:nvidia-tesla-t4;count:2;install-nvidia-driver\",min_ram=16GB",
                            &h));
    CHECK(h.has_accelerator && strcmp(h.accelerator_type, "nvidia-tesla-t4") == 0 &&
          h.accelerator_count == 2 && h.install_nvidia_driver && h.min_ram == 16000000000ull);
    CHECK_OK(bl_hints_parse("min_ram=4GiB", &h));
    CHECK(!h.has_accelerator && h.min_ram == 4ull << 30);
    CHECK_OK(bl_hints_parse("accelerator=count:1;type:l4", &h));
    CHECK(h.accelerator_count == 1);
    CHECK_OK(bl_hints_parse("", &h));
    CHECK(!h.has_accelerator && !h.min_ram);
    /* GPU types are free-form; the kind is decided by the type alone. */
    CHECK_OK(bl_hints_parse("accelerator=type:nvidia-l4;count:1", &h));
    CHECK(h.accelerator_kind == BL_ACCEL_GPU && !h.accelerator_topology[0]);
    /* TPUs in Dataflow's form (the proposal's one chip per worker), count implied by the topology. */
    CHECK_OK(bl_hints_parse("accelerator=type:tpu-v5-lite-podslice;topology:1x1", &h));
    CHECK(h.has_accelerator && h.accelerator_kind == BL_ACCEL_TPU &&
          strcmp(h.accelerator_type, "tpu-v5-lite-podslice") == 0 && h.accelerator_count == 1 &&
          strcmp(h.accelerator_topology, "1x1") == 0 && !h.install_nvidia_driver);
    CHECK_OK(bl_hints_parse("accelerator=\"type:tpu;count:1;topology:1x1\",min_ram=8GB", &h));
    CHECK(h.accelerator_kind == BL_ACCEL_TPU && strcmp(h.accelerator_type, "tpu") == 0 &&
          h.accelerator_count == 1 && h.min_ram == 8000000000ull);
    CHECK_OK(bl_hints_parse("accelerator=topology:1x1x1;type:tpu-v4", &h));
    CHECK(h.accelerator_kind == BL_ACCEL_TPU && h.accelerator_count == 1 &&
          strcmp(h.accelerator_topology, "1x1x1") == 0);
    char tpu_text[128];
    bl_hints_format(&h, tpu_text, sizeof tpu_text);
    CHECK_MSG(strcmp(tpu_text, "accelerator=type:tpu-v4;count:1;topology:1x1x1") == 0, "%s", tpu_text);
    bl_hints again; /* the text form parses back to the same hint */
    CHECK_OK(bl_hints_parse(tpu_text, &again));
    CHECK(again.accelerator_kind == BL_ACCEL_TPU && strcmp(again.accelerator_topology, "1x1x1") == 0);
    static const struct {
        const char *text, *want;
    } bad[] = {
        {"gpu=1", "at position 1: unknown hint 'gpu' (valid: accelerator, min_ram)"},
        {"accelerator=type:t4", "at position 13: accelerator needs count:<n>"},
        {"accelerator=count:1", "at position 13: accelerator needs type:<name>"},
        {"accelerator=type:t4;count:0", "at position 27: count must be at least 1"},
        {"accelerator=type:t4;count:x", "at position 27: count needs a positive integer"},
        {"accelerator=type:t4;count:1;turbo", "at position 29: unknown accelerator field 'turbo'"},
        {"accelerator=type:t 4;count:1", "position 13"},
        {"accelerator=\"type:t4;count:1", "at position 13: unterminated quote"},
        {"accelerator=type:t4;count:1;", "trailing ';'"},
        {"min_ram=lots", "at position 9: min_ram: expected a number"},
        {"min_ram=16QB", "at position 11: min_ram: unknown size unit"},
        {"min_ram", "at position 8: expected '=' after 'min_ram'"},
        {"min_ram=", "at position 9: empty value"},
        {"=1GB", "at position 1: expected a hint name"},
        {"accelerator=type:a;count:1,accelerator=type:b;count:1", "accelerator given twice"},
        {"accelerator=type:t4;count:99999", "at position 27: count is larger than 1024"},
        {"accelerator=type:abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghij;count:1",
         "at position 18: accelerator type too long"},
        {"min_ram=99999999999TB", "size too large"},
        {"min_ram=1GB;", "at position 10: min_ram: unknown size unit"},
        {"accelerator=type:t4;count:1;count:2", "at position 29: count given twice"},
        /* TPUs: one chip per worker, a well-formed topology, no GPU-only fields. */
        {"accelerator=type:tpu-v4;topology:2x2",
         "at position 34: topology:2x2 is 4 TPU chips, but this build runs one chip per worker (use "
         "topology:1x1 and more workers)"},
        {"accelerator=type:tpu-v5p-slice;topology:2x2x1", "at position 41: topology:2x2x1 is 4 TPU chips"},
        {"accelerator=type:tpu-v4;topology:1x2", "at position 34: topology:1x2 is 2 TPU chips"},
        {"accelerator=type:tpu-v4;topology:1x",
         "at position 36: topology needs AxB or AxBxC of positive integers (e.g. topology:1x1)"},
        {"accelerator=type:tpu-v4;topology:1", "at position 35: topology needs AxB or AxBxC"},
        {"accelerator=type:tpu-v4;topology:1x0", "at position 36: topology needs AxB or AxBxC"},
        {"accelerator=type:tpu-v4;topology:1x1x1x1", "at position 40: topology needs AxB or AxBxC"},
        {"accelerator=type:tpu-v4;topology:1*1", "at position 35: topology needs AxB or AxBxC"},
        {"accelerator=type:tpu-v4;topology:", "at position 34: topology needs AxB or AxBxC"},
        {"accelerator=type:tpu-v4;topology:2000x1", "at position 34: topology needs AxB or AxBxC"},
        {"accelerator=type:tpu-v4;count:1",
         "at position 13: a TPU needs topology:<AxB> (topology:1x1 for one chip, what this build runs)"},
        {"accelerator=type:tpu-v4;topology:1x1;count:2",
         "at position 44: count:2 disagrees with topology:1x1, which is 1 chip"},
        {"accelerator=type:tpu-v4;topology:1x1;install-nvidia-driver",
         "at position 38: install-nvidia-driver is for GPUs, not a TPU"},
        {"accelerator=type:tpu-v4;topology:1x1;topology:1x1", "at position 38: topology given twice"},
        {"accelerator=type:nvidia-l4;count:1;topology:1x1",
         "at position 36: topology is for TPUs (type:tpu-...); a GPU takes count:<n>"},
        {"accelerator=type:TPU-v4;topology:1x1",
         "at position 18: a TPU type is tpu or tpu-<generation> in lower case (e.g. tpu-v5-lite-podslice)"},
        {"accelerator=type:tpuv4;topology:1x1", "at position 18: a TPU type is tpu or tpu-<generation>"},
        {"accelerator=type:tpu-;topology:1x1", "at position 18: a TPU type is tpu or tpu-<generation>"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        bl_test_fuzz_seed("fuzz_hints", bad[i].text, strlen(bad[i].text));
        CHECK_ERR(bl_hints_parse(bad[i].text, &h), BL_ERR_FORMAT, bad[i].want);
    }
    /* Layering: the inner accelerator wins, min_ram takes the maximum. */
    bl_hints outer, inner;
    CHECK_OK(bl_hints_parse("accelerator=type:t4;count:1,min_ram=32GB", &outer));
    CHECK_OK(bl_hints_parse("accelerator=type:h100;count:8,min_ram=8GB", &inner));
    bl_hints_merge(&outer, &inner);
    CHECK(strcmp(outer.accelerator_type, "h100") == 0 && outer.accelerator_count == 8 &&
          outer.min_ram == 32000000000ull);
    char text[128];
    bl_hints_format(&outer, text, sizeof text);
    CHECK(strcmp(text, "accelerator=type:h100;count:8,min_ram=32000000000B") == 0);
    /* A TPU inside a GPU scope is a TPU, with its topology; a GPU inside a TPU scope drops it. */
    CHECK_OK(bl_hints_parse("accelerator=type:tpu-v4;topology:1x1", &inner));
    bl_hints_merge(&outer, &inner);
    CHECK(outer.accelerator_kind == BL_ACCEL_TPU && outer.accelerator_count == 1 &&
          strcmp(outer.accelerator_topology, "1x1") == 0);
    CHECK_OK(bl_hints_parse("accelerator=type:t4;count:2", &inner));
    bl_hints_merge(&outer, &inner);
    CHECK(outer.accelerator_kind == BL_ACCEL_GPU && outer.accelerator_count == 2 &&
          !outer.accelerator_topology[0]);
}

static bl_status ident(void *u, const void *in, void **out) {
    (void)u;
    *out = strdup(in);
    return BL_OK;
}

static void test_graph(void) {
    bl_pipeline *p;
    CHECK_OK(tp_new(NULL, &p));
    const void *vals[2] = {"a", "b"};
    bl_pcoll *in, *m, *m2, *x;
    CHECK_OK(bl_create(p, "Read", bl_coder_string(), vals, 2, &in));
    CHECK_OK(bl_map(p, "Upper", in, ident, NULL, bl_coder_string(), &m));
    CHECK_ERR(bl_map(p, "Upper", in, ident, NULL, bl_coder_string(), &m2), BL_ERR_INVALID_ARG,
              "duplicate transform name 'Upper'");
    CHECK_ERR(bl_map(p, "", in, ident, NULL, bl_coder_string(), &m2), BL_ERR_INVALID_ARG, "non-empty name");
    CHECK_ERR(bl_map(p, "NoCoder", in, ident, NULL, NULL, &m2), BL_ERR_INVALID_ARG, "output needs a coder");
    CHECK_ERR(bl_map(p, "NullIn", NULL, ident, NULL, bl_coder_string(), &m2), BL_ERR_INVALID_ARG,
              "input 0 is NULL");
    CHECK_ERR(bl_group_by_key(p, "GroupStrings", in, &x), BL_ERR_INVALID_ARG, "needs KV input");
    CHECK_ERR(bl_pardo_output(m, "nope", &x), BL_ERR_NOT_FOUND, "no output tagged 'nope'");
    /* The first construction error sticks: the pipeline refuses to run. */
    CHECK_ERR(bl_pipeline_run(p), BL_ERR_INVALID_ARG, "duplicate transform name 'Upper'");
    bl_pipeline_free(p);

    CHECK_OK(tp_new(NULL, &p));
    double k = 1.5;
    bl_kv kv = {&k, &k};
    const void *dv[1] = {&kv};
    bl_pcoll *d;
    CHECK_OK(bl_create(p, "Doubles", bl_coder_kv(bl_coder_double(), bl_coder_double()), dv, 1, &d));
    CHECK_ERR(bl_group_by_key(p, "Group", d, &x), BL_ERR_INVALID_ARG,
              "key coder 'double' is not deterministic");
    CHECK_ERR(bl_combine_per_key(p, "Sum", d, bl_combine_mean_double(), &x), BL_ERR_INVALID_ARG,
              "not deterministic");
    bl_pipeline_free(p);

    /* Composites name their insides and layer hints: innermost accelerator, largest min_ram. */
    const char *wide[] = {"--resource_hints=min_ram=2GB", NULL};
    CHECK_OK(tp_new(wide, &p));
    CHECK_OK(bl_create(p, "Read", bl_coder_string(), vals, 2, &in));
    CHECK_OK(bl_pipeline_begin_composite(p, "Outer", "accelerator=type:t4;count:1,min_ram=8GB"));
    CHECK_OK(bl_pipeline_begin_composite(p, "Inner", "accelerator=type:h100;count:2,min_ram=4GB"));
    CHECK_OK(bl_map(p, "Deep", in, ident, NULL, bl_coder_string(), &m));
    CHECK_OK(bl_pipeline_end_composite(p));
    CHECK_OK(bl_map(p, "Shallow", m, ident, NULL, bl_coder_string(), &m2));
    CHECK_OK(bl_pipeline_end_composite(p));
    CHECK_OK(bl_map(p, "Plain", m2, ident, NULL, bl_coder_string(), &x));
    CHECK_OK(bl_pipeline_set_hints(p, "Plain", "min_ram=1GB"));
    CHECK_ERR(bl_pipeline_set_hints(p, "Nope", "min_ram=1GB"), BL_ERR_NOT_FOUND, "no transform named 'Nope'");
    CHECK_ERR(bl_pipeline_set_hints(p, "Plain", "min_ram=1XB"), BL_ERR_FORMAT,
              "transform 'Plain': malformed");
    CHECK_ERR(bl_pipeline_begin_composite(p, "Bad", "accelerator=x"), BL_ERR_FORMAT, "composite 'Bad'");
    char *text, *dot;
    CHECK_OK(bl_pipeline_to_text(p, &text));
    fprintf(stderr, "%s", text);
    CHECK(strstr(text, "Outer/Inner/Deep [Map]") || strstr(text, "Outer/Inner/Deep [ParDo]"));
    CHECK(strstr(text, "Outer/Inner/Deep [ParDo] <- Read.out -> Outer/Inner/Deep.out (string) "
                       "{accelerator=type:h100;count:2,min_ram=8000000000B}"));
    CHECK(strstr(text, "Outer/Shallow [ParDo] <- Outer/Inner/Deep.out -> Outer/Shallow.out (string) "
                       "{accelerator=type:t4;count:1,min_ram=8000000000B}"));
    CHECK(strstr(text, "Plain [ParDo] <- Outer/Shallow.out -> Plain.out (string) {min_ram=2000000000B}"));
    CHECK_OK(bl_pipeline_to_dot(p, &dot));
    CHECK(strncmp(dot, "digraph pipeline {", 18) == 0 && strstr(dot, "t0 -> t1") && strstr(dot, "fillcolor"));
    free(text);
    free(dot);
    bl_pipeline_free(p);

    CHECK_OK(tp_new(NULL, &p));
    CHECK_OK(bl_pipeline_begin_composite(p, "Open", NULL));
    CHECK_ERR(bl_pipeline_run(p), BL_ERR_INVALID_ARG, "composite 'Open' was never ended");
    bl_pipeline_free(p);
}

static void test_mpi_unavailable(void) {
#ifdef BEAMLET_HAVE_MPI
    SKIP("built with MPI; the mpi runner is tested under tests/pipeline/mpi");
#else
    const char *flags[] = {"--runner=mpi", NULL};
    char *got = NULL;
    CHECK_ERR(tp_wordcount(flags, 1, &got, NULL), BL_ERR_UNSUPPORTED, "beamlet was built without MPI");
    free(got);
#endif
}

/* Deterministic fuzzing: random and mutated inputs through every parser must give OK or a
 * clean error, never a crash (run under ASan in CI to catch reads past the end). */
static void test_fuzz_parsers(void) {
    const uint64_t seed = 20261124;
    fprintf(stderr, "  seed %llu\n", (unsigned long long)seed);
    bl_rng rng;
    bl_rng_seed(&rng, seed);
    const char *hint_seeds[] = {"accelerator=\"type:nvidia-l4;count:1;install-nvidia-driver\",min_ram=16GB",
                                "min_ram=4GiB", "accelerator=count:2;type:h100",
                                "accelerator=type:tpu-v5-lite-podslice;count:1;topology:1x1x1"};
    const char alphabet[] = "acdeilmnoprstuvxy:;,=\" 0123456789GKMBi_-";
    const bl_coder *coders[] = {bl_coder_int64(),
                                bl_coder_double(),
                                bl_coder_string(),
                                bl_coder_bytes(),
                                bl_coder_kv(bl_coder_string(), bl_coder_iterable(bl_coder_int64())),
                                bl_coder_iterable(bl_coder_kv(bl_coder_bytes(), bl_coder_double()))};
    int ok = 0, refused = 0;
    for (size_t i = 0; i < sizeof hint_seeds / sizeof hint_seeds[0]; i++)
        bl_test_fuzz_seed("fuzz_hints", hint_seeds[i], strlen(hint_seeds[i]));
    for (int iter = 0; iter < 20000; iter++) {
        char text[96];
        const char *base = hint_seeds[bl_rng_below(&rng, sizeof hint_seeds / sizeof hint_seeds[0])];
        size_t n = strlen(base);
        memcpy(text, base, n + 1);
        int edits = 1 + (int)bl_rng_below(&rng, 4);
        for (int e = 0; e < edits; e++) {
            size_t at = (size_t)bl_rng_below(&rng, n + 1);
            switch (bl_rng_below(&rng, 3)) {
                case 0:
                    if (at < n) text[at] = alphabet[bl_rng_below(&rng, sizeof alphabet - 1)];
                    break;
                case 1:
                    if (at < n) {
                        memmove(text + at, text + at + 1, n - at);
                        n--;
                    }
                    break;
                default:
                    n = at;
                    text[n] = 0;
                    break; /* truncate */
            }
        }
        bl_hints h;
        bl_status st = bl_hints_parse(text, &h);
        CHECK_MSG(st == BL_OK || (st == BL_ERR_FORMAT && strstr(bl_last_error(), "position")), "%s", text);
        st == BL_OK ? ok++ : refused++;
        /* Random bytes through every coder. */
        uint8_t bytes[24];
        size_t len = (size_t)bl_rng_below(&rng, sizeof bytes + 1);
        for (size_t i = 0; i < len; i++) bytes[i] = (uint8_t)bl_rng_below(&rng, 256);
        if (len && bl_rng_below(&rng, 2))
            bytes[0] = (uint8_t)bl_rng_below(&rng, 4); /* small counts decode further */
        const bl_coder *c = coders[bl_rng_below(&rng, 6)];
        void *v = NULL;
        st = bl_coder_decode(c, bytes, len, &v);
        CHECK(st == BL_OK || st == BL_ERR_FORMAT);
        if (st == BL_OK) {
            bl_buf b = {0};
            CHECK_OK(bl_coder_encode(c, v, &b)); /* whatever decodes must encode again */
            bl_buf_free(&b);
            bl_coder_free_value(c, v);
        }
        /* Mutated option values. */
        char flag[64];
        snprintf(flag, sizeof flag, "--%s=%.20s", iter % 2 ? "worker_accelerators" : "worker_ram",
                 text + (iter % 7));
        char *argv[2] = {"prog", flag};
        bl_options *o;
        CHECK_OK(bl_options_new(&o));
        st = bl_options_parse(o, 2, argv);
        CHECK(st == BL_OK || st == BL_ERR_INVALID_ARG || st == BL_ERR_FORMAT);
        bl_options_free(o);
    }
    fprintf(stderr, "  hints: %d accepted, %d refused\n", ok, refused);
    CHECK(ok > 0 && refused > 0);
}

int main(void) {
    RUN(test_coders);
    RUN(test_options);
    RUN(test_options_strict_booleans);
    RUN(test_options_given);
    RUN(test_hints);
    RUN(test_graph);
    RUN(test_mpi_unavailable);
    RUN(test_fuzz_parsers);
    return bl_test_finish();
}
