// A multi-threaded batch predictor: one lmbff::Predictor shared by N worker threads, each
// labelling its share of the input lines; checks that the threads' results equal a
// single-threaded pass, and prints throughput.
//
//   c++ -std=c++17 -O2 -Iinclude examples/cpp/batch_predict.cpp
//       -Ltarget/serve/release -llmbff -lpthread -Wl,-rpath,$PWD/target/serve/release -o batch_predict
//   (one command; against an installed lmbff: $(pkg-config --cflags --libs lmbff) -lpthread)
//   ./batch_predict EXPORT_DIR THREADS < texts.txt
#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstring>
#include <exception>
#include <iostream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "lmbff.hpp"

int main(int argc, char** argv) {
    if (argc < 3) {
        std::cerr << "usage: " << argv[0] << " EXPORT_DIR THREADS < texts\n";
        return 2;
    }
    // The whole argument, a number from 1 to 64 (the predictor's most sessions).
    size_t workers = 0;
    const char* end = argv[2] + std::strlen(argv[2]);
    const auto [rest, err] = std::from_chars(argv[2], end, workers);
    if (err != std::errc() || rest != end || workers < 1 || workers > 64) {
        std::cerr << "THREADS is " << argv[2] << ": give a whole number from 1 to 64\n";
        return 2;
    }
    std::vector<std::string> texts;
    for (std::string line; std::getline(std::cin, line);) texts.push_back(line);
    try {
        lmbff::PredictorOptions options;
        options.threads = 1;  // per session
        options.sessions = static_cast<uint32_t>(workers);
        const lmbff::Predictor predictor(argv[1], options);
        const auto reference = predictor.predict(texts);

        std::vector<std::vector<lmbff::Prediction>> parts(workers);
        // An exception may not leave a thread (std::terminate): each worker keeps its
        // own, rethrown here after every thread has joined.
        std::vector<std::exception_ptr> failed(workers);
        const auto start = std::chrono::steady_clock::now();
        std::vector<std::thread> pool;
        // Threads already started are joined however this scope ends: starting the next
        // one may throw (std::system_error, std::bad_alloc), and a joinable thread
        // destroyed unjoined ends the program (std::terminate).
        struct JoinAll {
            std::vector<std::thread>& threads;
            ~JoinAll() {
                for (auto& t : threads)
                    if (t.joinable()) t.join();
            }
        } join_all{pool};
        for (size_t w = 0; w < workers; w++) {
            pool.emplace_back([&, w] {
                try {
                    std::vector<std::string> mine;
                    for (size_t i = w; i < texts.size(); i += workers) mine.push_back(texts[i]);
                    // Batches of 8, as an annotation tool labelling a stream would send them.
                    for (size_t at = 0; at < mine.size(); at += 8) {
                        std::vector<std::string> batch(mine.begin() + at, mine.begin() + std::min(at + 8, mine.size()));
                        auto got = predictor.predict(batch);
                        parts[w].insert(parts[w].end(), got.begin(), got.end());
                    }
                } catch (...) {
                    failed[w] = std::current_exception();
                }
            });
        }
        for (auto& t : pool) t.join();
        for (const auto& e : failed)
            if (e) std::rethrow_exception(e);
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

        size_t mismatches = 0;
        for (size_t w = 0; w < workers; w++)
            for (size_t k = 0; k < parts[w].size(); k++) {
                const auto& a = parts[w][k];
                const auto& b = reference[w + k * workers];
                if (a.label != b.label || std::fabs(a.probs[a.label] - b.probs[b.label]) > 1e-5) mismatches++;
            }
        const auto labels = predictor.labels();
        for (size_t i = 0; i < std::min<size_t>(3, texts.size()); i++)
            std::cout << labels[reference[i].label] << '\t' << reference[i].probs[reference[i].label] << '\t' << texts[i] << '\n';
        std::cerr << texts.size() << " texts, " << workers << " threads: " << texts.size() / secs << " texts/s, "
                  << mismatches << " mismatches with the single-threaded pass\n";
        return mismatches == 0 ? 0 : 1;
    } catch (const lmbff::Error& e) {
        std::cerr << e.what() << " (status " << e.status() << ")\n";
        return 1;
    } catch (const std::invalid_argument& e) {  // a text lmbff cannot take (lmbff.hpp's c_str)
        std::cerr << e.what() << "\n";
        return 1;
    } catch (const std::exception& e) {  // a thread that could not start, memory, a liblmbff of another C ABI
        std::cerr << e.what() << "\n";
        return 1;
    }
}
