// lmbff.hpp: a header-only C++17 wrapper over lmbff's C ABI (lmbff.h, installed beside it).
//
// What it wraps: predictors (options, labels, single texts and pairs, multi-label and
// regression exports, Label Studio JSON), tasks (create, open, save, register, relabel,
// remove, dev examples, counts, versions, export) and training, synchronous or as a
// background Run with a progress callback, polling, cancellation and waiting. Handles
// free themselves (RAII); a failed call throws lmbff::Error (its status and
// lmbff_last_error()); a string holding a NUL byte, where a C string would end, throws
// std::invalid_argument before any call; a liblmbff of another C ABI than this header's
// throws std::runtime_error from the Predictor and Task constructors and Task::open.
//
// What it does not wrap (call the C functions on handle() where needed): logging
// (lmbff_set_log_callback, lmbff_set_log_queue), lmbff_export of a checkpoint folder,
// lmbff_predict_with_error, lmbff_predictor_open_with_error and
// lmbff_task_export_with_error (for hosts whose calls run on a pool thread),
// lmbff_set_torch_threads, and the version and has_training queries. The threading
// rules are lmbff.h's: a Predictor may be used by any number of threads at once, a Task
// by one at a time (a call racing another throws lmbff::Error with LMBFF_ERR_BUSY;
// num_dev(), which has no status, then reads 0); destroy a Task only when no other
// thread is inside a call on it.
#ifndef LMBFF_HPP
#define LMBFF_HPP

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "lmbff.h"

namespace lmbff {

// A failed lmbff call: what() is the call's name and lmbff_last_error()'s message.
class Error : public std::runtime_error {
public:
    // Reads lmbff_last_error(): construct it right after the call that failed.
    Error(lmbff_status status, const std::string& what)
        : std::runtime_error(what + ": " + lmbff_last_error()), status_(status) {}
    // The call's status (LMBFF_ERR_*).
    lmbff_status status() const { return status_; }

private:
    lmbff_status status_;
};

// Throws lmbff::Error for a status other than LMBFF_OK; `what` names the call.
inline void check(lmbff_status s, const char* what) {
    if (s != LMBFF_OK) throw Error(s, what);
}

// Throws std::runtime_error, naming both numbers, when the liblmbff loaded has another C
// ABI than this header's (its structs and calls would be read differently).
inline void check_abi() {
    if (lmbff_abi_version() != LMBFF_ABI_VERSION)
        throw std::runtime_error("liblmbff has C ABI version " + std::to_string(lmbff_abi_version()) +
                                 "; lmbff.hpp was built for version " + std::to_string(LMBFF_ABI_VERSION) +
                                 ": build against that library's headers");
}

// s as a C string: a std::string may hold NUL bytes, where a C string ends, so lmbff
// would read it cut short; such a string throws std::invalid_argument naming it.
inline const char* c_str(const std::string& s, const char* name) {
    const size_t nul = s.find('\0');
    if (nul != std::string::npos)
        throw std::invalid_argument(std::string(name) + " holds a NUL byte at byte " + std::to_string(nul) + ": C strings end there");
    return s.c_str();
}

// An optional string as a C string, or NULL when it is not set.
inline const char* c_str(const std::optional<std::string>& s, const char* name) {
    return s ? c_str(*s, name) : nullptr;
}

// Training settings initialised by lmbff_train_params_init (this header's size, the
// library's defaults); set fields after. Strings set in it (warm_start, ...) must stay
// alive until train()/train_start() returns.
inline lmbff_train_params train_params() {
    lmbff_train_params p;
    check(lmbff_train_params_init(&p, sizeof p), "lmbff_train_params_init");
    return p;
}

// One input's prediction.
struct Prediction {
    uint32_t label = 0;          // predicted class (multi-label: the most probable label)
    float margin = 0;            // top probability minus the second (multi-label: see lmbff.h)
    float entropy = 0;           // uncertainty in nats
    std::vector<float> probs;    // one probability per label
    std::vector<size_t> labels;  // the labels that apply (single-label: the predicted class)
    std::optional<float> score;  // the score, for a regression export
};

namespace detail {
// Calls `call(buf, capacity, &needed)`, a C call that fills a NUL-terminated string
// after a size query, until the buffer holds what it needs; returns the string.
template <class Call>
std::string read_string(Call call, const char* what) {
    std::string buf;
    for (;;) {
        size_t needed = 0;
        const lmbff_status s = call(buf.empty() ? nullptr : buf.data(), buf.size(), &needed);
        if (s == LMBFF_OK) return std::string(buf.c_str());
        if (needed <= buf.size()) check(s, what);  // a failure other than the size
        buf.assign(needed, '\0');                  // (it may grow between calls: a version saved meanwhile)
    }
}

struct FreePredictor {
    void operator()(lmbff_predictor* p) const { lmbff_predictor_free(p); }
};
struct FreePredictions {
    void operator()(lmbff_predictions* r) const { lmbff_predictions_free(r); }
};
struct FreeTask {
    void operator()(lmbff_task* t) const { lmbff_task_free(t); }
};
struct FreeRun {
    void operator()(lmbff_run* r) const { lmbff_run_free(r); }
};
}  // namespace detail

// The results of one predict_batch call, kept in the library; holds its predictor open.
class Predictions {
public:
    // Number of inputs predicted.
    size_t size() const { return lmbff_predictions_count(handle_.get()); }

    // The prediction of input i (lmbff::Error when i is out of range).
    Prediction get(size_t i) const {
        Prediction out;
        const lmbff_predictions* r = handle_.get();
        check(lmbff_predictions_get(r, i, &out.label, &out.margin, &out.entropy), "lmbff_predictions_get");
        const size_t n = lmbff_predictor_num_labels(predictor_.get());
        out.probs.resize(n);
        check(lmbff_predictions_probs(r, i, out.probs.data(), n), "lmbff_predictions_probs");
        for (size_t label = 0; label < n; label++) {
            bool applies = false;
            check(lmbff_predictions_applies(r, i, label, &applies), "lmbff_predictions_applies");
            if (applies) out.labels.push_back(label);
        }
        if (lmbff_predictor_regression(predictor_.get(), nullptr, nullptr)) {
            float score = 0;
            check(lmbff_predictions_score(r, i, &score), "lmbff_predictions_score");
            out.score = score;
        }
        return out;
    }

    // Every prediction, in input order.
    std::vector<Prediction> all() const {
        std::vector<Prediction> out;
        for (size_t i = 0; i < size(); i++) out.push_back(get(i));
        return out;
    }

    // The predictions as Label Studio JSON (lmbff_predictions_label_studio_json); no
    // model_version: the version of the export that made them.
    std::string label_studio_json(const std::string& from_name, const std::string& to_name,
                                  const std::optional<std::string>& model_version = std::nullopt) const {
        const char* from = c_str(from_name, "from_name");
        const char* to = c_str(to_name, "to_name");
        const char* version = c_str(model_version, "model_version");
        return detail::read_string([&](char* buf, size_t capacity, size_t* needed) {
            return lmbff_predictions_label_studio_json(predictor_.get(), handle_.get(), from, to, version, buf, capacity, needed);
        }, "lmbff_predictions_label_studio_json");
    }

    // The C handle, for calls this wrapper does not make.
    const lmbff_predictions* handle() const { return handle_.get(); }

private:
    friend class Predictor;
    Predictions(std::shared_ptr<lmbff_predictor> predictor, lmbff_predictions* raw)
        : predictor_(std::move(predictor)), handle_(raw) {}
    std::shared_ptr<lmbff_predictor> predictor_;
    std::unique_ptr<lmbff_predictions, detail::FreePredictions> handle_;
};

// Predictor options; a field left unset keeps the library's default (lmbff_predictor_params).
struct PredictorOptions {
    std::optional<uint32_t> threads;          // ONNX Runtime threads per session (0: shared out)
    std::optional<uint32_t> sessions;         // calls that run at once (default 1)
    std::optional<uint32_t> max_batch;        // largest batch run at once (default 16)
    std::optional<std::string> ort_library;   // path of libonnxruntime.so (default: searched)
};

// A predictor over an export folder. Thread-safe: any number of threads may predict on one
// at once; copies share the one predictor, which lives while a copy or its Predictions do.
class Predictor {
public:
    // Opens the export folder (lmbff_predictor_open).
    explicit Predictor(const std::string& export_dir, const PredictorOptions& options = {}) {
        check_abi();
        // _params_init, not the by-value default: a later liblmbff fills only our bytes.
        lmbff_predictor_params p;
        check(lmbff_predictor_params_init(&p, sizeof p), "lmbff_predictor_params_init");
        if (options.threads) p.threads = *options.threads;
        if (options.sessions) p.sessions = *options.sessions;
        if (options.max_batch) p.max_batch = *options.max_batch;
        p.ort_library = c_str(options.ort_library, "ort_library");
        lmbff_predictor* raw = nullptr;
        check(lmbff_predictor_open(c_str(export_dir, "export_dir"), &p, &raw), "lmbff_predictor_open");
        handle_.reset(raw, detail::FreePredictor());
    }

    // The class names (multi-label: the label names), in index order.
    std::vector<std::string> labels() const {
        std::vector<std::string> out;
        for (size_t i = 0; i < lmbff_predictor_num_labels(handle_.get()); i++)
            out.emplace_back(lmbff_predictor_label(handle_.get(), i));
        return out;
    }
    // Whether the export is multi-label (any number of labels apply to an input).
    bool multi_label() const { return lmbff_predictor_multi_label(handle_.get()); }
    // Whether the export reads pairs of texts (use predict_pairs).
    bool reads_pairs() const { return lmbff_predictor_reads_pairs(handle_.get()); }
    // The score range (low, high) of a regression export; nullopt for a classifier.
    std::optional<std::pair<float, float>> regression() const {
        float low = 0, high = 0;
        if (!lmbff_predictor_regression(handle_.get(), &low, &high)) return std::nullopt;
        return std::make_pair(low, high);
    }

    // Predicts single texts.
    std::vector<Prediction> predict(const std::vector<std::string>& texts) const { return predict_batch(texts).all(); }
    // Predicts pairs of texts (an export that reads_pairs()).
    std::vector<Prediction> predict_pairs(const std::vector<std::pair<std::string, std::string>>& pairs) const {
        return predict_pairs_batch(pairs).all();
    }
    // Predicts single texts, keeping the results in the library (Label Studio JSON).
    Predictions predict_batch(const std::vector<std::string>& texts) const {
        std::vector<const char*> a;
        a.reserve(texts.size());
        for (const auto& t : texts) a.push_back(c_str(t, "a text"));
        return run(a.data(), nullptr, a.size());
    }
    // Predicts pairs of texts, keeping the results in the library.
    Predictions predict_pairs_batch(const std::vector<std::pair<std::string, std::string>>& pairs) const {
        std::vector<const char*> a, b;
        a.reserve(pairs.size());
        b.reserve(pairs.size());
        for (const auto& [first, second] : pairs) {
            a.push_back(c_str(first, "a text"));
            b.push_back(c_str(second, "a second text"));
        }
        return run(a.data(), b.data(), a.size());
    }

    // The C handle, for calls this wrapper does not make.
    const lmbff_predictor* handle() const { return handle_.get(); }

private:
    Predictions run(const char* const* a, const char* const* b, size_t n) const {
        lmbff_predictions* raw = nullptr;
        check(lmbff_predict(handle_.get(), a, b, n, &raw), "lmbff_predict");
        return Predictions(handle_, raw);
    }
    std::shared_ptr<lmbff_predictor> handle_;
};

// A run's progress, as lmbff_progress_fn reports it.
struct Progress {
    int32_t stage;  // LMBFF_STAGE_*
    size_t step;    // step of `total` in this stage
    size_t total;
    double loss;    // recent training loss (NaN before the tenth step)
    double metric;  // last dev metric (NaN when none)
};

// A progress callback: return false to stop the run. Called on lmbff's training thread,
// not the caller's: guard what it shares with other threads. An exception it throws
// stops the run and is rethrown by Run::wait() (or Task::train), unless the run had
// saved its version by then (Run::callback_error() has it).
using ProgressFn = std::function<bool(const Progress&)>;

// A run's state, as lmbff_run_poll reports it.
struct RunStatus {
    int32_t state;  // LMBFF_RUN_RUNNING, _SUCCEEDED, _FAILED or _CANCELLED
    size_t step;    // step of `total` (0 until the run reports its first step)
    size_t total;
};

// A training run in the background (Task::train_start). It owns its progress callback, so
// the callback lives as long as the run; destroying a run still going cancels it and waits
// (from the run's own callback, it cancels it without waiting: the callback object stays
// alive until that call returns, and the run calls it no more).
class Run {
public:
    Run(Run&&) = default;
    // Frees the run held (cancelling and waiting for it if it is still going), then takes o's.
    Run& operator=(Run&& o) noexcept {
        handle_ = std::move(o.handle_);      // frees our run first: it may call our callback
        callback_ = std::move(o.callback_);  // then our callback goes
        return *this;
    }

    // The run's state and step; never blocks.
    RunStatus poll() const {
        RunStatus s{};
        check(lmbff_run_poll(handle_.get(), &s.state, &s.step, &s.total), "lmbff_run_poll");
        return s;
    }
    // Asks the run to stop (from any thread); wait() then throws LMBFF_ERR_CANCELLED, unless
    // the run had decided its outcome already (or could not delete its saved version):
    // wait() then returns the version (lmbff_run_cancel in lmbff.h).
    void cancel() const { check(lmbff_run_cancel(handle_.get()), "lmbff_run_cancel"); }
    // Waits for the run to end and returns the new version; throws the run's error, or
    // rethrows what the progress callback threw if that stopped the run. A run that
    // ended before the callback's stop could take effect has saved its version: that is
    // returned, and the exception is kept for callback_error(). Not from the run's own
    // callback.
    std::string wait() const {
        const lmbff_status s = lmbff_run_wait(handle_.get());
        if (s != LMBFF_OK && callback_ && callback_->error) std::rethrow_exception(callback_->error);
        check(s, "lmbff_run_wait");
        return version();
    }
    // What the progress callback threw (null if nothing): read it after wait().
    std::exception_ptr callback_error() const { return callback_ ? callback_->error : nullptr; }
    // The version a succeeded run made ("v1", ...), or "" before it succeeds.
    std::string version() const {
        const char* v = lmbff_run_version(handle_.get());
        return v ? v : "";
    }

    // The C handle, for calls this wrapper does not make.
    const lmbff_run* handle() const { return handle_.get(); }

private:
    friend class Task;
    // The callback and what it threw; on the heap, so its address (the C call's
    // user_data) stays put when the Run moves. Shared: a call in progress holds it, so a
    // Run destroyed or reassigned from inside its own callback does not free it under
    // that call.
    struct Callback : std::enable_shared_from_this<Callback> {
        Callback(ProgressFn f) : fn(std::move(f)) {}
        ProgressFn fn;
        std::exception_ptr error;  // written on the training thread, read after the run ends
    };
    // The C callback: no exception may cross into the library.
    static bool on_progress(int32_t stage, size_t step, size_t total, double loss, double metric, void* user_data) {
        auto* cb = static_cast<Callback*>(user_data);
        const std::shared_ptr<Callback> held = cb->weak_from_this().lock();  // noexcept
        try {
            return cb->fn(Progress{stage, step, total, loss, metric});
        } catch (...) {
            cb->error = std::current_exception();
            return false;  // stops the run
        }
    }
    Run(lmbff_task* task, const lmbff_train_params& params, ProgressFn progress)
        : callback_(std::make_shared<Callback>(std::move(progress))) {
        lmbff_run* raw = nullptr;
        check(lmbff_train_start(task, &params, callback_->fn ? &Run::on_progress : nullptr, callback_.get(), &raw),
              "lmbff_train_start");
        handle_.reset(raw);
    }
    // Declared first, so destroyed last: lmbff_run_free (handle_) returns before it goes.
    std::shared_ptr<Callback> callback_;
    std::unique_ptr<lmbff_run, detail::FreeRun> handle_;
};

// What a new task is: Task(TaskParams) creates it (lmbff_task_params).
struct TaskParams {
    std::string model_dir;                   // HF model folder training starts from
    std::vector<std::string> labels;         // class names (regression: the two poles)
    std::vector<std::string> label_words;    // one per label, "great|good" for several (multi-label: no, yes; or empty)
    std::optional<std::string> template_;    // default "{text} It was {mask}."
    std::optional<uint32_t> max_len;         // input tokens (default 128)
    bool multi_label = false;                // LMBFF_TASK_MULTI_LABEL: any number of labels apply
    std::optional<std::pair<float, float>> regression;  // LMBFF_TASK_REGRESSION with this score range
};

// Counts of a task's items (lmbff_task_counts).
struct Counts {
    size_t examples;   // training examples of the label (dev examples not counted)
    size_t unlabeled;  // unlabeled texts
};

// A labelling task: used by one thread at a time (lmbff::Error LMBFF_ERR_BUSY otherwise).
class Task {
public:
    // Creates a task (lmbff_task_create); save() it before training.
    explicit Task(const TaskParams& params) {
        check_abi();
        // The C struct has one count for both arrays: a shorter one would be read past its end.
        // (A multi-label task reads two answer words, or none for "No" and "Yes".)
        const size_t words = params.multi_label ? 2 : params.labels.size();
        if (params.label_words.size() != words && !(params.multi_label && params.label_words.empty()))
            throw std::invalid_argument("label_words holds " + std::to_string(params.label_words.size()) + " words; the task needs " +
                                        std::to_string(words) + (params.multi_label ? " (no, yes) or none" : ", one per label"));
        std::vector<const char*> l, w;
        for (const auto& s : params.labels) l.push_back(c_str(s, "a label"));
        for (const auto& s : params.label_words) w.push_back(c_str(s, "a label word"));
        lmbff_task_params p;
        check(lmbff_task_params_init(&p, sizeof p), "lmbff_task_params_init");
        p.model_dir = c_str(params.model_dir, "model_dir");
        p.template_ = c_str(params.template_, "the template");
        p.labels = l.data();
        p.label_words = w.empty() ? nullptr : w.data();
        p.num_labels = l.size();
        if (params.max_len) p.max_len = *params.max_len;
        if (params.multi_label) p.flags |= LMBFF_TASK_MULTI_LABEL;
        if (params.regression) {
            p.flags |= LMBFF_TASK_REGRESSION;
            p.regression_low = params.regression->first;
            p.regression_high = params.regression->second;
        }
        lmbff_task* raw = nullptr;
        check(lmbff_task_create(&p, &raw), "lmbff_task_create");
        handle_.reset(raw);
    }

    // Reopens a task saved in `dir` (lmbff_task_open).
    static Task open(const std::string& dir) {
        check_abi();
        lmbff_task* raw = nullptr;
        check(lmbff_task_open(c_str(dir, "dir"), &raw), "lmbff_task_open");
        return Task(raw);
    }
    // Saves the task to `dir`; its versions live under <dir>/models/.
    void save(const std::string& dir) { check(lmbff_task_save(handle_.get(), c_str(dir, "dir")), "lmbff_task_save"); }

    // Registers a labelled example (text_b for a pair template); returns its id.
    uint64_t add_example(const std::string& text, const std::string& label, const std::optional<std::string>& text_b = std::nullopt) {
        uint64_t id = 0;
        check(lmbff_task_add_example(handle_.get(), c_str(text, "text"), c_str(text_b, "text_b"), c_str(label, "label"), &id),
              "lmbff_task_add_example");
        return id;
    }
    // Registers an unlabeled text (text_b for a pair template); returns its id.
    uint64_t add_unlabeled(const std::string& text, const std::optional<std::string>& text_b = std::nullopt) {
        uint64_t id = 0;
        check(lmbff_task_add_unlabeled(handle_.get(), c_str(text, "text"), c_str(text_b, "text_b"), &id), "lmbff_task_add_unlabeled");
        return id;
    }
    // Removes an example or unlabeled text.
    void remove(uint64_t id) { check(lmbff_task_remove(handle_.get(), id), "lmbff_task_remove"); }
    // Sets an item's label (an unlabeled text becomes an example).
    void relabel(uint64_t id, const std::string& label) {
        check(lmbff_task_relabel(handle_.get(), id, c_str(label, "label")), "lmbff_task_relabel");
    }
    // Marks an example as dev (held out of training; scores and calibrates) or back.
    void set_dev(uint64_t id, bool dev = true) { check(lmbff_task_set_dev(handle_.get(), id, dev), "lmbff_task_set_dev"); }
    // Number of dev examples.
    size_t num_dev() const { return lmbff_task_num_dev(handle_.get()); }
    // The class names, in index order.
    std::vector<std::string> labels() const {
        std::vector<std::string> out;
        for (size_t i = 0; i < lmbff_task_num_labels(handle_.get()); i++) out.emplace_back(lmbff_task_label(handle_.get(), i));
        return out;
    }
    // Training examples of label `label_index`, and unlabeled texts.
    Counts counts(size_t label_index) const {
        Counts c{};
        check(lmbff_task_counts(handle_.get(), label_index, &c.examples, &c.unlabeled), "lmbff_task_counts");
        return c;
    }

    // Trains a version and returns its name ("v1", ...); blocks until the run ends. An
    // exception the progress callback throws is rethrown, unless the run had decided its
    // outcome by then: the version is returned and the exception dropped (train_start,
    // then wait() and callback_error(), keeps it).
    std::string train(const lmbff_train_params& params, ProgressFn progress = nullptr) {
        return train_start(params, std::move(progress)).wait();
    }
    // Starts training in the background (the task is snapshotted: registering may go on).
    Run train_start(const lmbff_train_params& params, ProgressFn progress = nullptr) {
        return Run(handle_.get(), params, std::move(progress));
    }
    // The task's model versions, oldest first.
    std::vector<std::string> versions() const {
        const std::string list = detail::read_string([&](char* buf, size_t capacity, size_t* needed) {
            return lmbff_task_versions(handle_.get(), buf, capacity, needed);
        }, "lmbff_task_versions");
        std::vector<std::string> out;  // names separated by '\n'
        for (size_t at = 0; at < list.size();) {
            const size_t end = std::min(list.find('\n', at), list.size());
            out.push_back(list.substr(at, end - at));
            at = end + 1;
        }
        return out;
    }
    // Deletes a model version (its name is never reused).
    void delete_version(const std::string& version) {
        check(lmbff_task_delete_version(handle_.get(), c_str(version, "version")), "lmbff_task_delete_version");
    }
    // Exports a version to `out_dir` for a Predictor (fp16: weight matrices in fp16).
    void export_version(const std::string& version, const std::string& out_dir, bool fp16 = false) {
        check(lmbff_task_export(handle_.get(), c_str(version, "version"), c_str(out_dir, "out_dir"), fp16), "lmbff_task_export");
    }

    // The C handle, for calls this wrapper does not make.
    lmbff_task* handle() const { return handle_.get(); }

private:
    explicit Task(lmbff_task* raw) : handle_(raw) {}
    std::unique_ptr<lmbff_task, detail::FreeTask> handle_;
};

}  // namespace lmbff

#endif  // LMBFF_HPP
