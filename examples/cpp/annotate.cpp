// The annotation-tool loop of examples/c/annotate.c through the C++ wrapper (lmbff.hpp):
// register labelled examples (a few of them dev) and an unlabeled pool, train a version in
// the background with a progress line, export it, predict the pool and list the least
// certain items first; then the pool's predictions as Label Studio JSON.
//
//   c++ -std=c++17 -O2 -Iinclude examples/cpp/annotate.cpp -Ltarget/release -llmbff -lpthread
//       -Wl,-rpath,$PWD/target/release -o annotate-cpp     (one command)
//   ./annotate-cpp MODEL_DIR WORK_DIR [STEPS]   # e.g. $LMBFF_DEFAULT_MODEL runs/annotate-cpp 300
//
// Run again on the same WORK_DIR, it reopens the task saved there and trains its next
// version. Reads data/reviews/train.tsv (sentence<TAB>label, labels 0/1) for 16 examples
// per class, the last 2 of each marked dev, and the first 200 lines of
// data/reviews/unlabeled.txt for the pool. The library picks the method (docs/methods.md);
// STEPS are the prompt method's.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "lmbff.hpp"

// Lines of a file, without their line ends; throws if it cannot be read.
static std::vector<std::string> read_lines(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw std::runtime_error(path + ": cannot read it");
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) {
        if (!line.empty() && line.back() == '\r') line.pop_back();  // a CRLF file's line end
        lines.push_back(line);
    }
    return lines;
}

// Called on lmbff's training thread: it only writes to stderr.
static bool show(const lmbff::Progress& p) {
    // A report equal to the one before (work after a stage's last step) is no change.
    static lmbff::Progress last{-1, 0, 0, 0, 0};
    if (p.stage == last.stage && p.step == last.step && p.total == last.total) return true;
    last = p;
    const char* stage = p.stage == LMBFF_STAGE_ADAPT ? "adapt" : p.stage == LMBFF_STAGE_TRAIN ? "train" : "evaluate";
    const int width = 30, done = p.total ? static_cast<int>(width * p.step / p.total) : width;
    std::fprintf(stderr, "\r%s [%s%*s] %zu/%zu", stage, std::string(done, '=').c_str(), width - done, "", p.step, p.total);
    if (!std::isnan(p.loss)) std::fprintf(stderr, " loss %.4f", p.loss);
    if (p.step == p.total) std::fprintf(stderr, "\n");
    return true;  // false would stop the run
}

int main(int argc, char** argv) {
    if (argc < 3) {
        std::cerr << "usage: " << argv[0] << " MODEL_DIR WORK_DIR [STEPS]\n";
        return 2;
    }
    const std::string work = argv[2];
    try {
        // A WORK_DIR holding the task of an earlier run is reopened with the examples it saved.
        const bool reopened = std::filesystem::exists(work + "/task.json");
        lmbff::TaskParams params;
        params.model_dir = argv[1];
        params.labels = {"0", "1"};
        params.label_words = {"terrible", "great"};
        lmbff::Task task = reopened ? lmbff::Task::open(work) : lmbff::Task(params);
        if (!reopened) {
            int per_class[2] = {0, 0};
            const auto rows = read_lines("data/reviews/train.tsv");
            for (size_t i = 1; i < rows.size(); i++) {  // after the header line
                const size_t tab = rows[i].rfind('\t');
                if (tab == std::string::npos) continue;
                const std::string label = rows[i].substr(tab + 1);
                if ((label != "0" && label != "1") || per_class[label == "1"] == 16) continue;
                const uint64_t id = task.add_example(rows[i].substr(0, tab), label);
                if (++per_class[label == "1"] > 14) task.set_dev(id);  // held out: scores the version
            }
        }
        std::vector<std::string> pool;
        for (auto& line : read_lines("data/reviews/unlabeled.txt")) {
            if (pool.size() == 200) break;
            if (line.empty()) continue;
            if (!reopened) task.add_unlabeled(line);
            pool.push_back(std::move(line));
        }
        const lmbff::Counts negative = task.counts(0), positive = task.counts(1);
        std::cerr << "task" << (reopened ? " (reopened)" : "") << ": " << negative.examples << " + " << positive.examples
                  << " labelled, " << task.num_dev() << " dev, " << negative.unlabeled << " unlabeled\n";
        task.save(work);

        // Train in the background; a GUI would keep its event loop where this polls.
        lmbff_train_params tp = lmbff::train_params();
        if (argc > 3) {
            // Digits only, at most UINT32_MAX: stoul would read "-1" as 4294967295 steps.
            const std::string steps = argv[3];
            if (steps.empty() || steps.size() > 10 || steps.find_first_not_of("0123456789") != std::string::npos ||
                std::stoull(steps) == 0 || std::stoull(steps) > UINT32_MAX) {
                std::cerr << "steps is \"" << steps << "\": give a whole number from 1 to " << UINT32_MAX << '\n';
                return 1;
            }
            tp.steps = static_cast<uint32_t>(std::stoull(steps));
        } else {
            tp.steps = 300;
        }
        tp.device = LMBFF_DEVICE_CPU;
        lmbff::Run run = task.train_start(tp, show);
        while (run.poll().state == LMBFF_RUN_RUNNING) std::this_thread::sleep_for(std::chrono::milliseconds(100));
        const std::string version = run.wait();
        std::cerr << "versions:";
        for (const auto& v : task.versions()) std::cerr << ' ' << v;
        std::cerr << '\n';

        // Export it and predict the pool, least certain (smallest margin) first.
        const std::string out = work + "/export-" + version;
        task.export_version(version, out);
        const lmbff::Predictor predictor(out);
        const lmbff::Predictions batch = predictor.predict_batch(pool);
        const std::vector<lmbff::Prediction> preds = batch.all();
        std::vector<size_t> order(pool.size());
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return preds[a].margin < preds[b].margin; });
        const auto labels = predictor.labels();
        std::printf("model %s: %zu pool items, least certain first\n", version.c_str(), pool.size());
        for (size_t k = 0; k < std::min<size_t>(10, order.size()); k++) {
            const lmbff::Prediction& p = preds[order[k]];
            std::printf("%s\t%.3f\t%.3f\t%s\n", labels[p.label].c_str(), p.probs[p.label], p.margin, pool[order[k]].c_str());
        }
        const std::string json = batch.label_studio_json("sentiment", "text");
        std::printf("Label Studio JSON: %zu bytes for %zu predictions\n", json.size(), batch.size());
        return 0;
    } catch (const lmbff::Error& e) {
        std::cerr << e.what() << " (status " << e.status() << ")\n";
    } catch (const std::exception& e) {  // a file, a NUL byte in a text, another C ABI
        std::cerr << e.what() << '\n';
    }
    return 1;
}
