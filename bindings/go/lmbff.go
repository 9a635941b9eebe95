// Package lmbff is a Go binding of lmbff (few-shot labelling with LM-BFF prompt-based
// fine-tuning) over its C ABI (include/lmbff.h). Objects are io.Closers; failed calls
// return *Error with the status code and the library's message; training honours a
// context (cancelling it cancels the run).
//
// It links ../../target/release/liblmbff.so (the full build; `bash scripts/setup` makes
// it) with an rpath to that folder.
package lmbff

/*
#cgo CFLAGS: -I${SRCDIR}/../../include
#cgo LDFLAGS: -L${SRCDIR}/../../target/release -llmbff -Wl,-rpath,${SRCDIR}/../../target/release
#include <stdlib.h>
#include "lmbff.h"
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unsafe"
)

// Status names, indexed by status code.
var statusNames = []string{"OK", "INVALID_ARGUMENT", "UTF8", "IO", "FORMAT", "MODEL", "RUNTIME", "NO_TRAINING", "CANCELLED", "INTERNAL", "BUSY"}

// Error is a failed lmbff call.
type Error struct {
	Code    int    // the lmbff_status value
	Name    string // its name, e.g. "INVALID_ARGUMENT"
	Message string // lmbff_last_error() of the call
}

func (e *Error) Error() string { return fmt.Sprintf("lmbff %s: %s", e.Name, e.Message) }

// ErrCancelled is matched by errors.Is for a cancelled run.
var ErrCancelled = errors.New("lmbff: cancelled")

func (e *Error) Is(target error) bool { return target == ErrCancelled && e.Code == int(C.LMBFF_ERR_CANCELLED) }

func check(s C.lmbff_status) error {
	if s == C.LMBFF_OK {
		return nil
	}
	name := fmt.Sprintf("STATUS_%d", int(s))
	if int(s) < len(statusNames) {
		name = statusNames[s]
	}
	return &Error{Code: int(s), Name: name, Message: C.GoString(C.lmbff_last_error())}
}

// Version is the library version.
func Version() string { return C.GoString(C.lmbff_version_string()) }

// cstrings holds C copies of Go strings until Free.
type cstrings []*C.char

func (c *cstrings) add(s string) *C.char {
	p := C.CString(s)
	*c = append(*c, p)
	return p
}

func (c *cstrings) array(ss []string) **C.char {
	arr := (**C.char)(C.malloc(C.size_t(len(ss)+1) * C.size_t(unsafe.Sizeof(uintptr(0)))))
	view := unsafe.Slice(arr, len(ss)+1)
	for i, s := range ss {
		view[i] = c.add(s)
	}
	*c = append(*c, (*C.char)(unsafe.Pointer(arr)))
	return arr
}

func (c cstrings) free() {
	for _, p := range c {
		C.free(unsafe.Pointer(p))
	}
}

// Prediction of one input.
type Prediction struct {
	Label   string
	Probs   []float32
	Margin  float32 // top probability minus the second
	Entropy float32 // nats
}

// Predictor serves an export directory; safe for concurrent use.
type Predictor struct {
	p      *C.lmbff_predictor
	Labels []string
}

// OpenPredictor opens an export directory (threads 0: all cores).
func OpenPredictor(exportDir string, threads int) (*Predictor, error) {
	var cs cstrings
	defer cs.free()
	params := C.lmbff_predictor_default_params()
	params.threads = C.uint32_t(threads)
	var p *C.lmbff_predictor
	if err := check(C.lmbff_predictor_open(cs.add(exportDir), &params, &p)); err != nil {
		return nil, err
	}
	out := &Predictor{p: p}
	for i := 0; i < int(C.lmbff_predictor_num_labels(p)); i++ {
		out.Labels = append(out.Labels, C.GoString(C.lmbff_predictor_label(p, C.size_t(i))))
	}
	return out, nil
}

// Predict labels texts.
func (p *Predictor) Predict(texts []string) ([]Prediction, error) {
	if p.p == nil {
		return nil, errors.New("lmbff: predictor is closed")
	}
	if len(texts) == 0 {
		return nil, nil
	}
	var cs cstrings
	defer cs.free()
	var r *C.lmbff_predictions
	if err := check(C.lmbff_predict(p.p, cs.array(texts), nil, C.size_t(len(texts)), &r)); err != nil {
		return nil, err
	}
	defer C.lmbff_predictions_free(r)
	out := make([]Prediction, len(texts))
	for i := range texts {
		var label C.uint32_t
		var margin, entropy C.float
		if err := check(C.lmbff_predictions_get(r, C.size_t(i), &label, &margin, &entropy)); err != nil {
			return nil, err
		}
		probs := make([]float32, len(p.Labels))
		if err := check(C.lmbff_predictions_probs(r, C.size_t(i), (*C.float)(unsafe.Pointer(&probs[0])), C.size_t(len(probs)))); err != nil {
			return nil, err
		}
		out[i] = Prediction{Label: p.Labels[label], Probs: probs, Margin: float32(margin), Entropy: float32(entropy)}
	}
	return out, nil
}

// Close frees the predictor.
func (p *Predictor) Close() error {
	if p.p != nil {
		C.lmbff_predictor_free(p.p)
		p.p = nil
	}
	return nil
}

// Task is a labelling task; use it from one goroutine at a time.
type Task struct{ t *C.lmbff_task }

// NewTask makes a task for the model in modelDir with one label word per label.
func NewTask(modelDir, template string, labels, words []string) (*Task, error) {
	if len(labels) != len(words) {
		return nil, fmt.Errorf("lmbff: %d labels but %d label words", len(labels), len(words))
	}
	var cs cstrings
	defer cs.free()
	params := C.lmbff_task_default_params()
	params.model_dir = cs.add(modelDir)
	params.template_ = cs.add(template)
	params.labels = cs.array(labels)
	params.label_words = cs.array(words)
	params.num_labels = C.size_t(len(labels))
	var t *C.lmbff_task
	if err := check(C.lmbff_task_create(&params, &t)); err != nil {
		return nil, err
	}
	return &Task{t}, nil
}

// AddExample registers a labelled text; returns its id.
func (t *Task) AddExample(text, label string) (uint64, error) {
	var cs cstrings
	defer cs.free()
	var id C.uint64_t
	err := check(C.lmbff_task_add_example(t.t, cs.add(text), nil, cs.add(label), &id))
	return uint64(id), err
}

// AddUnlabeled registers an unlabeled text; returns its id.
func (t *Task) AddUnlabeled(text string) (uint64, error) {
	var cs cstrings
	defer cs.free()
	var id C.uint64_t
	err := check(C.lmbff_task_add_unlabeled(t.t, cs.add(text), nil, &id))
	return uint64(id), err
}

// Save writes the task to dir (model versions are stored there too).
func (t *Task) Save(dir string) error {
	var cs cstrings
	defer cs.free()
	return check(C.lmbff_task_save(t.t, cs.add(dir)))
}

// TrainParams of a run; zero fields take the library's defaults.
type TrainParams struct {
	Steps, BatchSize int
	LearningRate     float64
	Seed             uint64
	WarmStart        string
}

// Train trains a new model version in lmbff's background thread and returns its name.
// progress (may be nil) is called with the step as the run goes; cancelling ctx cancels
// the run (the error then matches ErrCancelled).
func (t *Task) Train(ctx context.Context, p TrainParams, progress func(step, total int)) (string, error) {
	var cs cstrings
	defer cs.free()
	params := C.lmbff_train_default_params()
	params.device = C.LMBFF_DEVICE_CPU
	if p.Steps > 0 {
		params.steps = C.uint32_t(p.Steps)
	}
	if p.BatchSize > 0 {
		params.batch_size = C.uint32_t(p.BatchSize)
	}
	if p.LearningRate > 0 {
		params.learning_rate = C.double(p.LearningRate)
	}
	if p.Seed > 0 {
		params.seed = C.uint64_t(p.Seed)
	}
	if p.WarmStart != "" {
		params.warm_start = cs.add(p.WarmStart)
	}
	var run *C.lmbff_run
	if err := check(C.lmbff_train_start(t.t, &params, nil, nil, &run)); err != nil {
		return "", err
	}
	defer C.lmbff_run_free(run)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		var state C.int32_t
		var step, total C.size_t
		C.lmbff_run_poll(run, &state, &step, &total)
		if progress != nil {
			progress(int(step), int(total))
		}
		if state != C.LMBFF_RUN_RUNNING {
			break
		}
		select {
		case <-ctx.Done():
			C.lmbff_run_cancel(run)
		case <-tick.C:
		}
	}
	if err := check(C.lmbff_run_wait(run)); err != nil {
		return "", err
	}
	return C.GoString(C.lmbff_run_version(run)), nil
}

// Export writes model version `version` to an export directory for OpenPredictor.
func (t *Task) Export(version, outDir string) error {
	var cs cstrings
	defer cs.free()
	return check(C.lmbff_task_export(t.t, cs.add(version), cs.add(outDir), false))
}

// Close frees the task (unsaved registrations are lost).
func (t *Task) Close() error {
	if t.t != nil {
		C.lmbff_task_free(t.t)
		t.t = nil
	}
	return nil
}
