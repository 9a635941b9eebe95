// A small RAII wrapper over lmbff's C ABI (C++17, header-only): handles free themselves,
// failed calls throw lmbff::Error with the status and the library's message.
#pragma once

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "lmbff.h"

namespace lmbff {

class Error : public std::runtime_error {
public:
    Error(lmbff_status status, const std::string& what)
        : std::runtime_error(what + ": " + lmbff_last_error()), status_(status) {}
    lmbff_status status() const { return status_; }

private:
    lmbff_status status_;
};

inline void check(lmbff_status s, const char* what) {
    if (s != LMBFF_OK) throw Error(s, what);
}

// s as a C string: a std::string may hold NUL bytes, where a C string ends, so lmbff
// would read it cut short; such a string throws std::invalid_argument naming it.
inline const char* c_str(const std::string& s, const char* name) {
    const size_t nul = s.find('\0');
    if (nul != std::string::npos)
        throw std::invalid_argument(std::string(name) + " holds a NUL byte at byte " + std::to_string(nul) + ": C strings end there");
    return s.c_str();
}

struct Prediction {
    uint32_t label;
    float margin;
    float entropy;
    std::vector<float> probs;
};

// One predictor may be shared by any number of threads (the C ABI guarantees it).
class Predictor {
public:
    explicit Predictor(const std::string& export_dir, uint32_t threads = 0, uint32_t sessions = 1) {
        // _params_init, not the by-value default: a later liblmbff fills only our bytes.
        lmbff_predictor_params p;
        check(lmbff_predictor_params_init(&p, sizeof p), "lmbff_predictor_params_init");
        p.threads = threads;
        p.sessions = sessions;
        lmbff_predictor* raw = nullptr;
        check(lmbff_predictor_open(c_str(export_dir, "export_dir"), &p, &raw), "lmbff_predictor_open");
        handle_.reset(raw);
    }

    std::vector<std::string> labels() const {
        std::vector<std::string> out;
        for (size_t i = 0; i < lmbff_predictor_num_labels(handle_.get()); i++)
            out.emplace_back(lmbff_predictor_label(handle_.get(), i));
        return out;
    }

    std::vector<Prediction> predict(const std::vector<std::string>& texts) const {
        std::vector<const char*> ptrs;
        ptrs.reserve(texts.size());
        for (const auto& t : texts) ptrs.push_back(c_str(t, "a text"));
        lmbff_predictions* raw = nullptr;
        check(lmbff_predict(handle_.get(), ptrs.data(), nullptr, ptrs.size(), &raw), "lmbff_predict");
        std::unique_ptr<lmbff_predictions, decltype(&lmbff_predictions_free)> r(raw, &lmbff_predictions_free);
        const size_t n = lmbff_predictor_num_labels(handle_.get());
        std::vector<Prediction> out(texts.size());
        for (size_t i = 0; i < texts.size(); i++) {
            out[i].probs.resize(n);
            check(lmbff_predictions_get(r.get(), i, &out[i].label, &out[i].margin, &out[i].entropy), "lmbff_predictions_get");
            check(lmbff_predictions_probs(r.get(), i, out[i].probs.data(), n), "lmbff_predictions_probs");
        }
        return out;
    }

private:
    struct Free {
        void operator()(lmbff_predictor* p) const { lmbff_predictor_free(p); }
    };
    std::unique_ptr<lmbff_predictor, Free> handle_;
};

// A labelling task: used by one thread at a time (LMBFF_ERR_BUSY otherwise).
class Task {
public:
    Task(const std::string& model_dir, const std::vector<std::string>& labels, const std::vector<std::string>& words,
         const std::string& templ = "{text} It was {mask}.") {
        // The C struct has one count for both arrays: a shorter one would be read past its end.
        if (labels.size() != words.size())
            throw std::invalid_argument(std::to_string(labels.size()) + " labels but " + std::to_string(words.size()) + " label words");
        std::vector<const char*> l, w;
        for (const auto& s : labels) l.push_back(c_str(s, "a label"));
        for (const auto& s : words) w.push_back(c_str(s, "a label word"));
        lmbff_task_params p;
        check(lmbff_task_params_init(&p, sizeof p), "lmbff_task_params_init");
        p.model_dir = c_str(model_dir, "model_dir");
        p.template_ = c_str(templ, "the template");
        p.labels = l.data();
        p.label_words = w.data();
        p.num_labels = l.size();
        lmbff_task* raw = nullptr;
        check(lmbff_task_create(&p, &raw), "lmbff_task_create");
        handle_.reset(raw);
    }

    uint64_t add_example(const std::string& text, const std::string& label) {
        uint64_t id = 0;
        check(lmbff_task_add_example(handle_.get(), c_str(text, "text"), nullptr, c_str(label, "label"), &id), "lmbff_task_add_example");
        return id;
    }
    uint64_t add_unlabeled(const std::string& text) {
        uint64_t id = 0;
        check(lmbff_task_add_unlabeled(handle_.get(), c_str(text, "text"), nullptr, &id), "lmbff_task_add_unlabeled");
        return id;
    }
    void save(const std::string& dir) { check(lmbff_task_save(handle_.get(), c_str(dir, "dir")), "lmbff_task_save"); }

    // Trains synchronously; returns the new model version.
    std::string train(const lmbff_train_params& params) {
        char version[64];
        check(lmbff_train(handle_.get(), &params, nullptr, nullptr, version, sizeof version), "lmbff_train");
        return version;
    }
    void export_version(const std::string& version, const std::string& out_dir) {
        check(lmbff_task_export(handle_.get(), c_str(version, "version"), c_str(out_dir, "out_dir"), false), "lmbff_task_export");
    }

private:
    struct Free {
        void operator()(lmbff_task* t) const { lmbff_task_free(t); }
    };
    std::unique_ptr<lmbff_task, Free> handle_;
};

}  // namespace lmbff
