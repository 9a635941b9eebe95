/* The annotation-tool loop through lmbff's C ABI: register a few labelled examples and an
 * unlabeled pool, train a model with a progress bar, export it, predict the pool
 * and list the least certain items first (the ones a person should label next).
 *
 *   cc -std=c99 -O2 -Iinclude examples/c/annotate.c -Ltarget/release -llmbff \
 *      -Wl,-rpath,$PWD/target/release -o annotate
 *   ./annotate MODEL_DIR WORK_DIR [STEPS]     # e.g. $LMBFF_DEFAULT_MODEL runs/annotate 300
 *
 * Run again on the same WORK_DIR, it reopens the task saved there and trains its next
 * version (v2, ...) on the same examples.
 * Reads data/reviews/train.tsv (sentence<TAB>label, labels 0/1) for 16 examples per class
 * and data/reviews/unlabeled.txt for the pool (first 200 lines). The library picks the
 * method (LMBFF_METHOD_AUTO, docs/methods.md): on a model without a masked-LM head (the
 * default MiniLM) the sentence-embedding method, unless ADAPT_STEPS > 0 asks for masked-LM
 * adaptation on the task's texts first, after which the prompt's zero-shot test decides.
 * STEPS are the prompt method's. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lmbff.h"

#define POOL_MAX 200

/* 0 for LMBFF_OK; otherwise says what failed, with the library's message, and gives 1
   (the caller then goes to its clean-up). */
static int check(lmbff_status s, const char *what) {
    if (s == LMBFF_OK) return 0;
    fprintf(stderr, "%s failed (status %d): %s\n", what, (int)s, lmbff_last_error());
    return 1;
}

/* A count given as text: digits only, at most UINT32_MAX ("-1" and "abc" are refused,
   not read as 4294967295 and 0). */
static int parse_count(const char *s, const char *what, uint32_t *out) {
    char *end = NULL;
    errno = 0;
    unsigned long long v = s[0] >= '0' && s[0] <= '9' ? strtoull(s, &end, 10) : 0;
    if (!end || *end != '\0' || errno == ERANGE || v > UINT32_MAX) {
        fprintf(stderr, "%s is \"%s\": give a whole number from 0 to %lu\n", what, s, (unsigned long)UINT32_MAX);
        return 1;
    }
    *out = (uint32_t)v;
    return 0;
}

static const char *stage_name(int32_t stage) {
    switch (stage) {
    case LMBFF_STAGE_ADAPT: return "adapt";
    case LMBFF_STAGE_TRAIN: return "train";
    case LMBFF_STAGE_EVALUATE: return "evaluate";
    default: return "stage";
    }
}

static bool progress(int32_t stage, size_t step, size_t total, double loss, double metric, void *user_data) {
    (void)metric;
    (void)user_data;
    /* A report equal to the one before (work after a stage's last step) is no change. */
    static int32_t last_stage = -1;
    static size_t last_step = 0, last_total = 0;
    if (stage == last_stage && step == last_step && total == last_total) return true;
    last_stage = stage;
    last_step = step;
    last_total = total;
    int width = 30, done = total ? (int)(width * step / total) : width;
    fprintf(stderr, "\r%s [%.*s%*s] %zu/%zu", stage_name(stage), done,
            "==============================", width - done, "", step, total);
    if (!isnan(loss)) fprintf(stderr, " loss %.4f", loss);
    if (step == total) fprintf(stderr, "\n");
    return true; /* returning false would stop the run */
}

typedef struct {
    char *text;
    float margin;
    uint32_t label;
    float p;
} item;

static int by_margin(const void *a, const void *b) {
    float x = ((const item *)a)->margin, y = ((const item *)b)->margin;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL_DIR WORK_DIR [STEPS]\n", argv[0]);
        return 2;
    }
    /* A liblmbff of another C ABI reads the structs and calls differently: refuse it
       before any call (its SONAME keeps the loader from linking one to this program, but
       a library loaded by hand, or renamed, gets past that). */
    if (lmbff_abi_version() != LMBFF_ABI_VERSION) {
        fprintf(stderr, "liblmbff has C ABI version %u; this program was built for %d: rebuild it against that library's header\n",
                (unsigned)lmbff_abi_version(), LMBFF_ABI_VERSION);
        return 1;
    }
    const char *labels[] = {"0", "1"}, *words[] = {"terrible", "great"};
    /* _params_init writes only sizeof tp bytes: this program keeps working with a
       later liblmbff whose struct has grown. */
    lmbff_task_params tp;
    if (check(lmbff_task_params_init(&tp, sizeof tp), "lmbff_task_params_init")) return 1;
    tp.model_dir = argv[1];
    tp.template_ = "{text} It was {mask}.";
    tp.labels = labels;
    tp.label_words = words;
    tp.num_labels = 2;
    lmbff_task *task = NULL;
    /* A WORK_DIR holding the task of an earlier run is reopened, with the examples it
       saved: this run trains its next version (a task is saved into one folder). */
    char saved[4096];
    snprintf(saved, sizeof saved, "%s/task.json", argv[2]);
    bool reopened = access(saved, F_OK) == 0;
    if (check(reopened ? lmbff_task_open(argv[2], &task) : lmbff_task_create(&tp, &task), reopened ? "lmbff_task_open" : "lmbff_task_create"))
        return 1;

    /* From here every path, a failed call's too, ends at `done`, which frees what is held. */
    int rc = 1;
    lmbff_predictor *pred = NULL;
    lmbff_predictions *r = NULL;
    char *line = NULL;
    size_t cap = 0;
    item pool[POOL_MAX];
    size_t n = 0;

    /* 16 labelled examples per class. */
    FILE *f = fopen("data/reviews/train.tsv", "r");
    if (!f) { perror("data/reviews/train.tsv"); goto done; }
    int per_class[2] = {0, 0};
    if (getline(&line, &cap, f) < 0) { fprintf(stderr, "data/reviews/train.tsv: no header line\n"); goto done; }
    while (!reopened && getline(&line, &cap, f) > 0) {
        char *tab = strrchr(line, '\t');
        if (!tab) continue;
        *tab = 0;
        int l = atoi(tab + 1);
        if (l < 0 || l > 1 || per_class[l] == 16) continue;
        if (check(lmbff_task_add_example(task, line, NULL, labels[l], NULL), "lmbff_task_add_example")) goto done;
        per_class[l]++;
    }
    fclose(f);
    f = NULL;

    /* The unlabeled pool. */
    f = fopen("data/reviews/unlabeled.txt", "r");
    if (!f) { perror("data/reviews/unlabeled.txt"); goto done; }
    ssize_t got;
    while (n < POOL_MAX && (got = getline(&line, &cap, f)) > 0) {
        if (line[got - 1] == '\n') line[--got] = 0;
        if (got > 0 && line[got - 1] == '\r') line[--got] = 0; /* a CRLF file's line ends */
        if (!*line) continue;
        if (!(pool[n].text = strdup(line))) { fprintf(stderr, "out of memory\n"); goto done; }
        n++;   /* held from here, freed at `done` */
        if (!reopened && check(lmbff_task_add_unlabeled(task, line, NULL, NULL), "lmbff_task_add_unlabeled")) goto done;
    }
    fclose(f);
    f = NULL;
    size_t examples[2], unlabeled;
    if (check(lmbff_task_counts(task, 0, &examples[0], &unlabeled), "lmbff_task_counts")) goto done;
    if (check(lmbff_task_counts(task, 1, &examples[1], NULL), "lmbff_task_counts")) goto done;
    fprintf(stderr, "task%s: %zu + %zu labelled, %zu unlabeled\n", reopened ? " (reopened)" : "", examples[0], examples[1], unlabeled);
    if (check(lmbff_task_save(task, argv[2]), "lmbff_task_save")) goto done;

    /* Train a version (synchronously here; lmbff_train_start runs it in the background). */
    lmbff_train_params p;
    if (check(lmbff_train_params_init(&p, sizeof p), "lmbff_train_params_init")) goto done;
    p.steps = 300;
    if (argc > 3 && parse_count(argv[3], "steps", &p.steps)) goto done;
    if (p.steps == 0) {
        fprintf(stderr, "steps is 0: give a whole number from 1 to %lu\n", (unsigned long)UINT32_MAX);
        goto done;
    }
    p.device = LMBFF_DEVICE_CPU;
    const char *adapt = getenv("ADAPT_STEPS");
    if (adapt && parse_count(adapt, "ADAPT_STEPS", &p.adaptation_steps)) goto done;
    char version[32];
    if (check(lmbff_train(task, &p, progress, NULL, version, sizeof version), "lmbff_train")) goto done;

    /* Export it and predict the pool. */
    char out[4096];
    snprintf(out, sizeof out, "%s/export-%s", argv[2], version);
    if (check(lmbff_task_export(task, version, out, false), "lmbff_task_export")) goto done;
    if (check(lmbff_predictor_open(out, NULL, &pred), "lmbff_predictor_open")) goto done;
    const char *texts[POOL_MAX];
    for (size_t i = 0; i < n; i++) texts[i] = pool[i].text;
    if (check(lmbff_predict(pred, texts, NULL, n, &r), "lmbff_predict")) goto done;
    for (size_t i = 0; i < n; i++) {
        float probs[2];
        if (check(lmbff_predictions_get(r, i, &pool[i].label, &pool[i].margin, NULL), "lmbff_predictions_get")) goto done;
        if (check(lmbff_predictions_probs(r, i, probs, 2), "lmbff_predictions_probs")) goto done;
        pool[i].p = probs[pool[i].label];
    }
    lmbff_predictions_free(r);
    r = NULL;

    qsort(pool, n, sizeof *pool, by_margin);
    printf("model %s: %zu pool items, least certain first\n", version, n);
    for (size_t i = 0; i < n && i < 10; i++)
        printf("%s\t%.3f\t%.3f\t%s\n", lmbff_predictor_label(pred, pool[i].label), pool[i].p, pool[i].margin, pool[i].text);
    rc = 0;
done:
    lmbff_predictor_free(pred);
    lmbff_predictions_free(r);
    for (size_t i = 0; i < n; i++) free(pool[i].text);
    free(line);
    if (f) fclose(f);
    lmbff_task_free(task);
    return rc;
}
