/* Predict texts with an lmbff export directory through the C ABI.
 *
 *   cc -std=c99 -O2 -Iinclude examples/c/predict.c -Ltarget/serve/release -llmbff \
 *      -Wl,-rpath,"$PWD/target/serve/release" -o predict
 *   ./predict EXPORT_DIR [--batch N] < texts.txt
 *
 * One text per line on stdin; prints "label<TAB>p(label)<TAB>margin<TAB>text" per line.
 * On stderr: time to open the predictor, time to the first prediction (cold start,
 * from process start), throughput, and the process's peak resident memory. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lmbff.h"

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* Milliseconds since this process started (from /proc/self/stat's start time). */
static double since_process_start_ms(void) {
    FILE *f = fopen("/proc/self/stat", "r");
    unsigned long long start = 0;
    if (f) {
        char buf[4096];
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        buf[n] = 0;
        fclose(f);
        char *p = strrchr(buf, ')');
        for (int field = 2; p && field < 22; field++) p = strchr(p + 1, ' ');
        if (p) start = strtoull(p + 1, NULL, 10);
    }
    FILE *u = fopen("/proc/uptime", "r");
    double uptime = 0;
    if (u) {
        if (fscanf(u, "%lf", &uptime) != 1) uptime = 0;
        fclose(u);
    }
    long ticks = sysconf(_SC_CLK_TCK); /* clock ticks per second (100 on most Linux builds) */
    return uptime * 1e3 - start * 1e3 / (double)(ticks > 0 ? ticks : 100);
}

static long peak_rss_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0) kb = strtol(line + 6, NULL, 10);
    if (f) fclose(f);
    return kb;
}

static int fail(const char *what, lmbff_status s) {
    fprintf(stderr, "%s failed (status %d): %s\n", what, (int)s, lmbff_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s EXPORT_DIR [--batch N] < texts\n", argv[0]);
        return 2;
    }
    size_t batch = 64;
    if (argc >= 3) {
        char *end = NULL;
        unsigned long b = argc >= 4 && strcmp(argv[2], "--batch") == 0 ? strtoul(argv[3], &end, 10) : 0;
        if (argc != 4 || !end || *end || end == argv[3] || b == 0) {
            fprintf(stderr, "usage: %s EXPORT_DIR [--batch N] < texts (N: a whole number of texts, 1 or more)\n", argv[0]);
            return 2;
        }
        batch = (size_t)b;
    }

    /* A liblmbff of another C ABI reads the structs and calls differently: refuse it
       before any call (its SONAME keeps the loader from linking one to this program, but
       a library loaded by hand, or renamed, gets past that). */
    if (lmbff_abi_version() != LMBFF_ABI_VERSION) {
        fprintf(stderr, "liblmbff has C ABI version %u; this program was built for %d: rebuild it against that library's header\n",
                (unsigned)lmbff_abi_version(), LMBFF_ABI_VERSION);
        return 1;
    }
    double t0 = now_ms();
    lmbff_predictor *p = NULL;
    lmbff_predictor_params params;
    lmbff_status s = lmbff_predictor_params_init(&params, sizeof params);
    if (s != LMBFF_OK) return fail("lmbff_predictor_params_init", s);
    s = lmbff_predictor_open(argv[1], &params, &p);
    if (s != LMBFF_OK) return fail("lmbff_predictor_open", s);
    double t_open = now_ms() - t0;

    /* Read all lines. */
    size_t cap = 1024, n = 0;
    char **texts = malloc(cap * sizeof *texts);
    char *line = NULL;
    size_t len = 0;
    ssize_t got;
    while ((got = getline(&line, &len, stdin)) != -1) {
        if (got > 0 && line[got - 1] == '\n') line[--got] = 0;
        if (got > 0 && line[got - 1] == '\r') line[--got] = 0; /* a CRLF file's line ends */
        if (n == cap) {
            char **grown = texts ? realloc(texts, 2 * cap * sizeof *texts) : NULL;
            if (!grown) break;
            texts = grown;
            cap *= 2;
        }
        if (!texts || !(texts[n] = strdup(line))) break;
        n++;
    }
    if (!feof(stdin)) {
        fprintf(stderr, "reading stdin stopped after %zu lines (out of memory or a read error)\n", n);
        for (size_t i = 0; i < n; i++) free(texts[i]);
        free(texts);
        free(line);
        lmbff_predictor_free(p);
        return 1;
    }
    free(line);

    size_t labels = lmbff_predictor_num_labels(p);
    float *probs = malloc(labels * sizeof *probs);
    int rc = 0;
    if (!probs) {
        fprintf(stderr, "out of memory\n");
        rc = 1;
    }
    double first_ms = -1, t1 = now_ms();
    for (size_t at = 0; at < n && rc == 0; at += batch) {
        size_t k = n - at < batch ? n - at : batch;
        lmbff_predictions *r = NULL;
        s = lmbff_predict(p, (const char *const *)texts + at, NULL, k, &r);
        if (s != LMBFF_OK) {
            rc = fail("lmbff_predict", s);
            break;
        }
        if (first_ms < 0) first_ms = since_process_start_ms();
        for (size_t i = 0; i < k; i++) {
            uint32_t label;
            float margin, entropy;
            s = lmbff_predictions_get(r, i, &label, &margin, &entropy);
            if (s == LMBFF_OK) s = lmbff_predictions_probs(r, i, probs, labels);
            if (s != LMBFF_OK) {
                rc = fail("lmbff_predictions_get/probs", s);
                break;
            }
            printf("%s\t%.4f\t%.4f\t%s\n", lmbff_predictor_label(p, label), probs[label], margin, texts[at + i]);
        }
        lmbff_predictions_free(r);
    }
    if (rc == 0) {
        double secs = (now_ms() - t1) / 1e3;
        char first[64] = "no text to predict";
        if (first_ms >= 0) snprintf(first, sizeof first, "first prediction %.0f ms after process start", first_ms);
        fprintf(stderr, "lmbff %s (%s): open %.0f ms; %s; %zu texts in %.2f s (%.0f/s); peak RSS %ld MiB\n",
                lmbff_version_string(), lmbff_has_training() ? "with training" : "serve-only", t_open, first, n, secs, n / (secs > 0 ? secs : 1), peak_rss_kb() / 1024);
    }
    /* Every path frees what it holds: a host that goes on after an error leaks nothing. */
    for (size_t i = 0; i < n; i++) free(texts[i]);
    free(texts);
    free(probs);
    lmbff_predictor_free(p);
    return rc;
}
