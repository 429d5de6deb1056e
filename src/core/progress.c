/* A progress bar for long work. On a terminal it redraws one line at most 10 times a second;
 * in a log file (CI, nohup) it prints a plain line at each 10% so logs stay short. */
#define _POSIX_C_SOURCE 200809L
#include "beamlet/core.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void format_seconds(double s, char *buf, size_t n) {
    if (s < 0) s = 0;
    int t = (int)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%d:%02d:%02d", t / 3600, (t / 60) % 60, t % 60);
    else
        snprintf(buf, n, "%d:%02d", t / 60, t % 60);
}

static void draw(bl_progress *p, bool final) {
    double now = bl_time_now();
    double elapsed = now - p->start;
    double frac = p->total > 0 ? (double)p->done / (double)p->total : 0.0;
    if (frac > 1) frac = 1;
    char el[16], eta[16];
    format_seconds(elapsed, el, sizeof el);
    format_seconds(frac > 0 ? elapsed * (1 - frac) / frac : 0, eta, sizeof eta);
    double rate = elapsed > 0 ? (double)p->done / elapsed : 0;
    if (p->tty) {
        char bar[31];
        int filled = (int)(frac * 30);
        for (int i = 0; i < 30; i++) bar[i] = i < filled ? '#' : '.';
        bar[30] = '\0';
        fprintf(stderr, "\r%s [%s] %3d%% %lld/%lld %s<%s %.1f/s %s\033[K", p->label, bar, (int)(frac * 100),
                (long long)p->done, (long long)p->total, el, eta, rate, p->suffix);
        if (final) fputc('\n', stderr);
    } else {
        fprintf(stderr, "%s %3d%% %lld/%lld elapsed %s eta %s %.1f/s %s\n", p->label, (int)(frac * 100),
                (long long)p->done, (long long)p->total, el, eta, rate, p->suffix);
    }
    fflush(stderr);
    p->last_draw = now;
}

void bl_progress_begin(bl_progress *p, const char *label, int64_t total) {
    memset(p, 0, sizeof *p);
    snprintf(p->label, sizeof p->label, "%s", label);
    p->total = total;
    p->start = bl_time_now();
    p->tty = isatty(fileno(stderr)) != 0;
    p->last_decile = 0;
}

void bl_progress_step(bl_progress *p, int64_t n, const char *suffix) {
    p->done += n;
    if (suffix) snprintf(p->suffix, sizeof p->suffix, "%s", suffix);
    if (p->tty) {
        if (bl_time_now() - p->last_draw >= 0.1) draw(p, false);
    } else if (p->total > 0) {
        int decile = (int)(10 * p->done / p->total);
        if (decile > p->last_decile && p->done < p->total) {
            p->last_decile = decile;
            draw(p, false);
        }
    }
}

void bl_progress_end(bl_progress *p) { draw(p, true); }
