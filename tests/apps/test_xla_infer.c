/* `beamlet infer --device=xla:cpu` against `--device=cpu` on the Fashion-MNIST test split with
 * the shipped model: the same accuracy and the same top class for every image. A subset keeps
 * the suite short (BEAMLET_XLA_INFER_LIMIT, default 512; 0 is the whole split of 10,000, whose
 * figure the issue quotes: 91.35% on both). Skips when the dataset or the XLA device is absent. */
#include "apps/app_test.h"
#include "bl_test.h"

#include <sys/wait.h>
#include <unistd.h>

#include "beamlet/devices.h"

static char root[64], bin[512];

/* Runs infer on `device`; returns the exit status and fills the summary line "accuracy ...". */
static int infer(const char *device, int limit, char *accuracy, size_t size) {
    char cmd[2048], line[1024];
    snprintf(cmd, sizeof cmd, "cd %s && %s/beamlet infer --device=%s --limit=%d --output=%s/%s 2>&1", root,
             bin, device, limit, root, device);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    accuracy[0] = 0;
    while (fgets(line, sizeof line, p)) {
        char *a = strstr(line, "accuracy ");
        if (a && strstr(line, "labelled images")) snprintf(accuracy, size, "%s", a);
        if (strstr(line, "rror")) fprintf(stderr, "  %s: %s", device, line);
    }
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The top class of every prediction, by example index ("fashion-mnist/t10k/00255": 255). */
static int top_classes(const char *device, int *out, int max) {
    char path[256], line[4096];
    snprintf(path, sizeof path, "%s/%s/predictions-00000-of-00001.jsonl", root, device);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    int n = 0;
    for (int i = 0; i < max; i++) out[i] = -1;
    while (fgets(line, sizeof line, f)) {
        char *e = strstr(line, "t10k/"), *c = strstr(line, "\"class\":");
        int i = e ? atoi(e + 5) : -1;
        if (i < 0 || i >= max || !c) continue;
        out[i] = atoi(c + 8);
        n++;
    }
    fclose(f);
    return n;
}

static void test_same_accuracy_as_cpu(void) {
    if (access("/usr/share/datasets/fashion-mnist", R_OK) != 0)
        SKIP("no Fashion-MNIST at /usr/share/datasets/fashion-mnist (scripts/setup.sh installs it)");
    bl_device_choice c;
    bl_device_request r = {"xla:cpu", -1, false, BL_F32};
    if (bl_device_resolve(&r, &c) != BL_OK) SKIP("%s", bl_last_error());
    const char *env = getenv("BEAMLET_XLA_INFER_LIMIT");
    int limit = env ? atoi(env) : 512;
    char acc_cpu[256], acc_xla[256];
    CHECK_MSG(infer("cpu", limit, acc_cpu, sizeof acc_cpu) == 0, "infer on cpu failed");
    CHECK_MSG(infer("xla:cpu", limit, acc_xla, sizeof acc_xla) == 0, "infer on xla:cpu failed");
    fprintf(stderr, "  cpu:     %s  xla:cpu: %s", acc_cpu, acc_xla);
    CHECK_MSG(acc_cpu[0] && strcmp(acc_cpu, acc_xla) == 0, "accuracy differs: cpu '%s', xla:cpu '%s'",
              acc_cpu, acc_xla);
    int n = limit ? limit : 10000;
    int *a = malloc(sizeof(int) * (size_t)n), *b = malloc(sizeof(int) * (size_t)n);
    int na = top_classes("cpu", a, n), nb = top_classes("xla:cpu", b, n);
    CHECK_MSG(na == n && nb == n, "predictions: %d on cpu, %d on xla:cpu, expected %d", na, nb, n);
    int differ = 0;
    for (int i = 0; i < n && i < na && i < nb; i++) differ += a[i] != b[i];
    CHECK_MSG(differ == 0, "%d of %d images got another top class on xla:cpu", differ, n);
    free(a);
    free(b);
}

int main(void) {
    int ready = app_test_begin("xla_infer", bin, sizeof bin, root, sizeof root);
    if (ready != 0) return ready < 0;
    RUN(test_same_accuracy_as_cpu);
    return app_test_finish(root);
}
