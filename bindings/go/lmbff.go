// Package lmbff is a Go binding of lmbff (few-shot labelling with LM-BFF prompt-based
// fine-tuning) over its C ABI (include/lmbff.h). Objects are io.Closers; failed calls
// return *Error with the status code and the library's message; training honours a
// context (cancelling it cancels the run). Log messages go to SetLogger's function.
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
	"math"
	"runtime"
	"strings"
	"sync"
	"time"
	"unsafe"
)

// Status names, indexed by status code.
var statusNames = []string{"OK", "INVALID_ARGUMENT", "UTF8", "IO", "FORMAT", "MODEL", "RUNTIME", "NO_TRAINING", "CANCELLED", "INTERNAL", "BUSY", "CONFLICT"}

// Error is a failed lmbff call.
type Error struct {
	Code    int    // the lmbff_status value
	Name    string // its name, e.g. "INVALID_ARGUMENT"
	Message string // lmbff_last_error() of the call
	cause   error  // a run cancelled through its context: ctx.Err()
}

func (e *Error) Error() string { return fmt.Sprintf("lmbff %s: %s", e.Name, e.Message) }

// Unwrap is the context's error of a run cancelled through it (errors.Is(err,
// context.Canceled) or context.DeadlineExceeded), else nil.
func (e *Error) Unwrap() error { return e.cause }

// ErrCancelled is matched by errors.Is for a cancelled run.
var ErrCancelled = errors.New("lmbff: cancelled")

func (e *Error) Is(target error) bool {
	return target == ErrCancelled && e.Code == int(C.LMBFF_ERR_CANCELLED)
}

// call makes one lmbff call and reads its error on the same OS thread: lmbff's last
// error is per thread, and between two cgo calls Go may move the goroutine to another.
func call(f func() C.lmbff_status) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return check(f())
}

// check turns a status into an error; the caller holds the OS thread of the call that
// returned it (see call).
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

// invalid is an INVALID_ARGUMENT error made by the binding, for a value it cannot pass
// to C as it is.
func invalid(format string, args ...interface{}) error {
	return &Error{Code: int(C.LMBFF_ERR_INVALID_ARGUMENT), Name: "INVALID_ARGUMENT", Message: fmt.Sprintf(format, args...)}
}

// negativeIndex is the error for a negative input index (passed on, it would wrap into
// a huge one).
func negativeIndex(i, n int) error {
	if n == 0 {
		return invalid("index is %d: there are no predictions", i)
	}
	return invalid("index is %d: give 0 to %d (%d predictions)", i, n-1, n)
}

// uint32Arg is n for a uint32_t field of the C ABI; a negative n, or one past its
// range, is an error naming it (rather than wrapping into another number).
func uint32Arg(name string, n int) (C.uint32_t, error) {
	if n < 0 || uint64(n) > math.MaxUint32 {
		return 0, invalid("%s is %d: give 0 to %d", name, n, uint32(math.MaxUint32))
	}
	return C.uint32_t(n), nil
}

// int32Arg passes an enumeration's value (a Device, a Method, a LogLevel) on as the C
// int32_t it is, refusing one that would wrap (the library names the values it knows).
func int32Arg(name string, n int) (C.int32_t, error) {
	if n < math.MinInt32 || n > math.MaxInt32 {
		return 0, invalid("%s is %d: not a value of the enumeration", name, n)
	}
	return C.int32_t(n), nil
}

// Version is the library version.
func Version() string { return C.GoString(C.lmbff_version_string()) }

// HeaderABIVersion is the C ABI version this package was compiled against.
const HeaderABIVersion = C.LMBFF_ABI_VERSION

// ABIVersion is the C ABI version of the loaded library (HeaderABIVersion if they match).
func ABIVersion() int { return int(C.lmbff_abi_version()) }

// abiMismatch is what the calls that open or make something (a predictor, a task, an
// export) return when the loaded library speaks another C ABI version than the header
// this package was compiled against: what a call means may differ, so none is made.
func abiMismatch(loaded int) error {
	if loaded == HeaderABIVersion {
		return nil
	}
	return &Error{Code: int(C.LMBFF_ERR_INVALID_ARGUMENT), Name: "INVALID_ARGUMENT",
		Message: fmt.Sprintf("the loaded liblmbff has C ABI version %d, this package was compiled against version %d: use the package of the same lmbff version", loaded, HeaderABIVersion)}
}

// HasTraining says whether the library can train and export (false for the serve-only
// build, whose training and export calls fail with NO_TRAINING).
func HasTraining() bool { return bool(C.lmbff_has_training()) }

// SetTorchThreads sets libtorch's intra-op threads for training (1 to 256, or the
// machine's hardware threads where it has more; 0 for all cores).
// Process-wide: it affects every run in the process.
func SetTorchThreads(n int) error {
	threads, err := uint32Arg("threads", n)
	if err != nil {
		return err
	}
	return call(func() C.lmbff_status { return C.lmbff_set_torch_threads(threads) })
}

// ExportCheckpoint writes a trained checkpoint directory (a `lmbff train --out`
// directory, or a task's version under <task>/models/) to an export directory for
// OpenPredictor; fp16 stores weight matrices as fp16.
func ExportCheckpoint(checkpointDir, outDir string, fp16 bool) error {
	if err := abiMismatch(ABIVersion()); err != nil {
		return err
	}
	var cs cstrings
	defer cs.free()
	from, to := cs.add("checkpointDir", checkpointDir), cs.add("outDir", outDir)
	if cs.err != nil {
		return cs.err
	}
	return call(func() C.lmbff_status { return C.lmbff_export(from, to, C.bool(fp16)) })
}

// cstrings holds C copies of Go strings until free. A C string ends at its first NUL,
// so a Go string holding one would reach lmbff cut short: the first such string is
// kept in err, naming it, and the caller returns err instead of calling lmbff.
type cstrings struct {
	ptrs []*C.char
	err  error
}

// add copies s, the argument called name.
func (c *cstrings) add(name, s string) *C.char {
	if i := strings.IndexByte(s, 0); i >= 0 && c.err == nil {
		c.err = invalid("%s holds a NUL byte at byte %d: C strings end there, so lmbff would read only what comes before it", name, i)
	}
	p := C.CString(s)
	c.ptrs = append(c.ptrs, p)
	return p
}

// ptr is add for an optional string: nil gives NULL.
func (c *cstrings) ptr(name string, s *string) *C.char {
	if s == nil {
		return nil
	}
	return c.add(name, *s)
}

// opt is add, with "" as NULL (the library's default).
func (c *cstrings) opt(name, s string) *C.char {
	if s == "" {
		return nil
	}
	return c.add(name, s)
}

func (c *cstrings) array(name string, ss []string) **C.char {
	arr := (**C.char)(C.malloc(C.size_t(len(ss)+1) * C.size_t(unsafe.Sizeof(uintptr(0)))))
	view := unsafe.Slice(arr, len(ss)+1)
	for i, s := range ss {
		view[i] = c.add(fmt.Sprintf("%s[%d]", name, i), s)
	}
	c.ptrs = append(c.ptrs, (*C.char)(unsafe.Pointer(arr)))
	return arr
}

func (c *cstrings) free() {
	for _, p := range c.ptrs {
		C.free(unsafe.Pointer(p))
	}
}

// copyOut runs a size-query call (buf, capacity, needed): first with no buffer, which
// only sets needed, then with a buffer of that size (again if it grew meanwhile). It
// returns the string without its NUL.
func copyOut(query func(buf *C.char, capacity C.size_t, needed *C.size_t) C.lmbff_status) ([]byte, error) {
	runtime.LockOSThread() // the error is read on the thread of the call (see call)
	defer runtime.UnlockOSThread()
	var buf []byte
	for {
		var needed C.size_t
		var p *C.char
		if len(buf) > 0 {
			p = (*C.char)(unsafe.Pointer(&buf[0]))
		}
		s := query(p, C.size_t(len(buf)), &needed)
		if s == C.LMBFF_OK {
			return buf[:needed-1], nil
		}
		if needed == 0 || int(needed) <= len(buf) { // failed for another reason than size
			return nil, check(s)
		}
		buf = make([]byte, needed)
	}
}

// Prediction of one input.
type Prediction struct {
	Label string
	// Labels that apply: Label, or for a multi-label export every label at 0.5 or more.
	Labels []string
	Probs  []float32
	// Margin: top probability minus the second; for a multi-label export, the least
	// certain label's distance from the 0.5 threshold, scaled to [0, 1].
	Margin float32
	// Entropy in nats; for a multi-label export, the sum of the labels' yes/no entropies.
	Entropy float32
	Score   float32 // a regression export's score (Predictor.Range); 0 for a classifier
}

// Predictor serves an export directory; safe for concurrent use, Close included: it
// waits for the calls in flight, and later calls fail with "predictor is closed" (so a
// SetLogger function must not Close the predictor whose call it is logging for: that
// call is in flight until the function returns).
type Predictor struct {
	mu     sync.RWMutex // held for reading by every call on p, for writing by Close
	p      *C.lmbff_predictor
	labels []string // the export's, whatever a caller does to Labels
	Labels []string
	// MultiLabel: Probs are each label's own probability (one yes/no prompt or head per label).
	MultiLabel bool
	// ReadsPairs: the export reads pairs of texts (PredictBatch's textsB).
	ReadsPairs bool
	// Regression: the export scores inputs on [Range[0], Range[1]] (each prediction's Score).
	Regression bool
	Range      [2]float32
}

// PredictorOptions of OpenPredictorWith; zero fields take the library's defaults.
type PredictorOptions struct {
	Threads    int    // ONNX Runtime intra-op threads per session (0: the cores divided among the sessions)
	Sessions   int    // sessions in the pool: how many calls run at once (default 1)
	MaxBatch   int    // largest batch run at once; larger calls are split (default 16)
	ORTLibrary string // libonnxruntime.so ("": LMBFF_ORT_LIB, ORT_DYLIB_PATH, then next to liblmbff.so)
}

// OpenPredictor opens an export directory (threads 0: all cores).
func OpenPredictor(exportDir string, threads int) (*Predictor, error) {
	return OpenPredictorWith(exportDir, PredictorOptions{Threads: threads})
}

// OpenPredictorWith opens an export directory with options.
func OpenPredictorWith(exportDir string, o PredictorOptions) (*Predictor, error) {
	if err := abiMismatch(ABIVersion()); err != nil {
		return nil, err
	}
	var cs cstrings
	defer cs.free()
	var params C.lmbff_predictor_params
	// Filled through _params_init with this binding's size: a later library whose struct
	// has grown fills only these bytes (its by-value defaults would overflow them).
	if err := call(func() C.lmbff_status { return C.lmbff_predictor_params_init(&params, C.size_t(unsafe.Sizeof(params))) }); err != nil {
		return nil, err
	}
	threads, err := uint32Arg("Threads", o.Threads)
	if err != nil {
		return nil, err
	}
	params.threads = threads
	if o.Sessions < 0 || o.MaxBatch < 0 {
		return nil, invalid("Sessions %d and MaxBatch %d: give at least 1, or 0 for the default", o.Sessions, o.MaxBatch)
	}
	if o.Sessions > 0 {
		if params.sessions, err = uint32Arg("Sessions", o.Sessions); err != nil {
			return nil, err
		}
	}
	if o.MaxBatch > 0 {
		if params.max_batch, err = uint32Arg("MaxBatch", o.MaxBatch); err != nil {
			return nil, err
		}
	}
	params.ort_library = cs.opt("ORTLibrary", o.ORTLibrary)
	dir := cs.add("exportDir", exportDir)
	if cs.err != nil {
		return nil, cs.err
	}
	var p *C.lmbff_predictor
	if err := call(func() C.lmbff_status { return C.lmbff_predictor_open(dir, &params, &p) }); err != nil {
		return nil, err
	}
	out := &Predictor{p: p, MultiLabel: bool(C.lmbff_predictor_multi_label(p)), ReadsPairs: bool(C.lmbff_predictor_reads_pairs(p))}
	var low, high C.float
	if C.lmbff_predictor_regression(p, &low, &high) {
		out.Regression, out.Range = true, [2]float32{float32(low), float32(high)}
	}
	for i := 0; i < int(C.lmbff_predictor_num_labels(p)); i++ {
		out.labels = append(out.labels, C.GoString(C.lmbff_predictor_label(p, C.size_t(i))))
	}
	out.Labels = append([]string(nil), out.labels...)
	// A predictor dropped without Close is freed by the collector (its model is large).
	runtime.SetFinalizer(out, (*Predictor).Close)
	return out, nil
}

// Predict labels texts.
func (p *Predictor) Predict(texts []string) ([]Prediction, error) {
	r, err := p.PredictBatch(texts, nil)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	out := make([]Prediction, r.Len())
	for i := range out {
		if out[i], err = r.Get(i); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// PredictBatch predicts texts, paired with textsB for two-sentence templates (nil
// otherwise), and keeps the results for Get, Score and LabelStudioJSON; Close them.
func (p *Predictor) PredictBatch(texts, textsB []string) (*Predictions, error) {
	if textsB != nil && len(textsB) != len(texts) {
		return nil, invalid("%d texts but %d second texts", len(texts), len(textsB))
	}
	var cs cstrings
	defer cs.free()
	var b **C.char
	if textsB != nil {
		b = cs.array("textsB", textsB)
	}
	a := cs.array("texts", texts)
	if cs.err != nil {
		return nil, cs.err
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.p == nil {
		return nil, invalid("the predictor is closed")
	}
	var r *C.lmbff_predictions
	if err := call(func() C.lmbff_status { return C.lmbff_predict(p.p, a, b, C.size_t(len(texts)), &r) }); err != nil {
		return nil, err
	}
	out := &Predictions{r: r, p: p}
	runtime.SetFinalizer(out, (*Predictions).Close)
	return out, nil
}

// Close frees the predictor once the calls in flight have returned; Predictions already
// made stay readable.
func (p *Predictor) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.p != nil {
		C.lmbff_predictor_free(p.p)
		p.p = nil
	}
	return nil
}

// Predictions are the results of one PredictBatch call.
type Predictions struct {
	mu sync.RWMutex // held for reading by every call on r, for writing by Close
	r  *C.lmbff_predictions
	p  *Predictor
}

// Len is the number of predictions (0 once closed).
func (r *Predictions) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return int(C.lmbff_predictions_count(r.r))
}

// Get is the prediction of input i.
func (r *Predictions) Get(i int) (Prediction, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.r == nil {
		return Prediction{}, invalid("the predictions are closed")
	}
	if i < 0 {
		return Prediction{}, negativeIndex(i, int(C.lmbff_predictions_count(r.r)))
	}
	var label C.uint32_t
	var margin, entropy C.float
	if err := call(func() C.lmbff_status { return C.lmbff_predictions_get(r.r, C.size_t(i), &label, &margin, &entropy) }); err != nil {
		return Prediction{}, err
	}
	probs := make([]float32, len(r.p.labels))
	if err := call(func() C.lmbff_status {
		return C.lmbff_predictions_probs(r.r, C.size_t(i), (*C.float)(unsafe.Pointer(&probs[0])), C.size_t(len(probs)))
	}); err != nil {
		return Prediction{}, err
	}
	var labels []string
	for l, name := range r.p.labels {
		var applies C.bool
		if err := call(func() C.lmbff_status { return C.lmbff_predictions_applies(r.r, C.size_t(i), C.size_t(l), &applies) }); err != nil {
			return Prediction{}, err
		}
		if applies {
			labels = append(labels, name)
		}
	}
	var score C.float
	if r.p.Regression {
		if err := call(func() C.lmbff_status { return C.lmbff_predictions_score(r.r, C.size_t(i), &score) }); err != nil {
			return Prediction{}, err
		}
	}
	return Prediction{Label: r.p.labels[label], Labels: labels, Probs: probs, Margin: float32(margin), Entropy: float32(entropy), Score: float32(score)}, nil
}

// Score is the regression score of input i (exports made with a regression range;
// INVALID_ARGUMENT for a classifier).
func (r *Predictions) Score(i int) (float32, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.r == nil {
		return 0, invalid("the predictions are closed")
	}
	if i < 0 {
		return 0, negativeIndex(i, int(C.lmbff_predictions_count(r.r)))
	}
	var score C.float
	err := call(func() C.lmbff_status { return C.lmbff_predictions_score(r.r, C.size_t(i), &score) })
	return float32(score), err
}

// LabelStudioJSON is the predictions as Label Studio predictions: a JSON array of
// {"model_version", "score" (top probability), "result": [{"from_name", "to_name",
// "type": "choices", "value": {"choices": [label]}}]}, one per input (a regression
// export: "type": "number", "value": {"number": score}, and no "score"). modelVersion ""
// takes the export's. The predictor must still be open.
func (r *Predictions) LabelStudioJSON(fromName, toName, modelVersion string) ([]byte, error) {
	var cs cstrings
	defer cs.free()
	from, to, version := cs.add("fromName", fromName), cs.add("toName", toName), cs.opt("modelVersion", modelVersion)
	if cs.err != nil {
		return nil, cs.err
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.r == nil {
		return nil, invalid("the predictions are closed")
	}
	r.p.mu.RLock()
	defer r.p.mu.RUnlock()
	if r.p.p == nil {
		return nil, invalid("the predictor is closed")
	}
	return copyOut(func(buf *C.char, capacity C.size_t, needed *C.size_t) C.lmbff_status {
		return C.lmbff_predictions_label_studio_json(r.p.p, r.r, from, to, version, buf, capacity, needed)
	})
}

// Close frees the predictions once the calls in flight on them have returned; a second
// Close does nothing, and calls after it report the predictions closed.
func (r *Predictions) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.r != nil {
		C.lmbff_predictions_free(r.r)
		r.r = nil
	}
	return nil
}

// Task is a labelling task, safe for concurrent use: calls take turns (Train only while
// it starts the run: registering goes on while it trains), and Close waits for the call
// in flight; later calls fail with "the task is closed". A Task dropped without Close is
// freed by the garbage collector (a finalizer; unsaved registrations are lost either way).
type Task struct {
	mu      sync.Mutex     // held by every call on t but Export, and by Close
	exports sync.WaitGroup // Exports under way: Close waits for them
	t       *C.lmbff_task
	Labels  []string // class names, in class order
}

// call makes one lmbff call f on the task's handle, holding the task's lock (the C side
// would answer a second goroutine BUSY, and Close must not free it mid-call).
func (t *Task) call(f func(h *C.lmbff_task) C.lmbff_status) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.t == nil {
		return invalid("the task is closed")
	}
	return call(func() C.lmbff_status { return f(t.t) })
}

func wrapTask(t *C.lmbff_task) *Task {
	out := &Task{t: t}
	for i := 0; i < int(C.lmbff_task_num_labels(t)); i++ {
		out.Labels = append(out.Labels, C.GoString(C.lmbff_task_label(t, C.size_t(i))))
	}
	runtime.SetFinalizer(out, (*Task).Close)
	return out
}

// TaskParams of CreateTask; ModelDir, Labels and LabelWords (one per label: a word of
// the model's vocabulary, or several separated by "|"; see lmbff.h) are required.
type TaskParams struct {
	ModelDir   string
	Template   string // readable (`{text} It was {mask}.`) or LM-BFF syntax; "" for that default
	Labels     []string
	LabelWords []string
	MaxLen     int // maximum input length in tokens (0: 128)
	// MultiLabel: any number of Labels may apply to an example; it trains as one yes/no
	// prompt per label, reading each label's name as the template's second sentence
	// ("" template: `{text_a} Is it about {text_b}? {mask}.`). LabelWords are then the
	// two answer words, no then yes (nil: "No", "Yes"), and AddExample's label lists the
	// labels that apply separated by "|" ("" for none).
	MultiLabel bool
	// Regression: examples are scored from Range[0] to Range[1]; Labels and LabelWords
	// are the lower and the upper pole, and AddExample's label is the score ("3.5").
	// Exports output the score (Predictions.Score). A zero Range keeps the library's
	// default, 0 to 1.
	Regression bool
	Range      [2]float32
}

// NewTask makes a task for the model in modelDir with one label word per label.
func NewTask(modelDir, template string, labels, words []string) (*Task, error) {
	return CreateTask(TaskParams{ModelDir: modelDir, Template: template, Labels: labels, LabelWords: words})
}

// CreateTask makes a task; its template and label words are checked against the
// model's tokenizer now (MODEL otherwise).
func CreateTask(p TaskParams) (*Task, error) {
	if err := abiMismatch(ABIVersion()); err != nil {
		return nil, err
	}
	// Too few labels is named as such, as the library names it, before their words.
	if !p.MultiLabel && len(p.Labels) < 2 {
		return nil, invalid("a task needs at least two labels, got %d", len(p.Labels))
	}
	if p.MultiLabel && len(p.Labels) == 0 {
		return nil, invalid("a multi-label task needs at least one label, got 0")
	}
	if !p.MultiLabel && len(p.Labels) != len(p.LabelWords) {
		return nil, invalid("%d labels but %d label words", len(p.Labels), len(p.LabelWords))
	}
	if p.MultiLabel && p.LabelWords != nil && len(p.LabelWords) != 2 {
		return nil, invalid("a multi-label task takes two answer words (no, yes), not %d", len(p.LabelWords))
	}
	var cs cstrings
	defer cs.free()
	var params C.lmbff_task_params
	// Filled through _params_init with this binding's size: a later library whose struct
	// has grown fills only these bytes (its by-value defaults would overflow them).
	if err := call(func() C.lmbff_status { return C.lmbff_task_params_init(&params, C.size_t(unsafe.Sizeof(params))) }); err != nil {
		return nil, err
	}
	params.model_dir = cs.add("ModelDir", p.ModelDir)
	params.template_ = cs.opt("Template", p.Template)
	params.labels = cs.array("Labels", p.Labels)
	if p.LabelWords != nil {
		params.label_words = cs.array("LabelWords", p.LabelWords)
	}
	if cs.err != nil {
		return nil, cs.err
	}
	params.num_labels = C.size_t(len(p.Labels))
	if p.MultiLabel {
		params.flags |= C.LMBFF_TASK_MULTI_LABEL
	}
	if p.Regression {
		params.flags |= C.LMBFF_TASK_REGRESSION
		if p.Range != [2]float32{} { // zero: the library's 0 to 1, as the other zero fields keep its defaults
			params.regression_low = C.float(p.Range[0])
			params.regression_high = C.float(p.Range[1])
		}
	}
	if p.MaxLen < 0 {
		return nil, invalid("MaxLen is %d: give a length in tokens, or 0 for 128", p.MaxLen)
	}
	if p.MaxLen > 0 {
		var err error
		if params.max_len, err = uint32Arg("MaxLen", p.MaxLen); err != nil {
			return nil, err
		}
	}
	var t *C.lmbff_task
	if err := call(func() C.lmbff_status { return C.lmbff_task_create(&params, &t) }); err != nil {
		return nil, err
	}
	return wrapTask(t), nil
}

// OpenTask reopens a task saved with Save.
func OpenTask(dir string) (*Task, error) {
	if err := abiMismatch(ABIVersion()); err != nil {
		return nil, err
	}
	var cs cstrings
	defer cs.free()
	d := cs.add("dir", dir)
	if cs.err != nil {
		return nil, cs.err
	}
	var t *C.lmbff_task
	if err := call(func() C.lmbff_status { return C.lmbff_task_open(d, &t) }); err != nil {
		return nil, err
	}
	return wrapTask(t), nil
}

// AddExample registers a labelled text; returns its id.
func (t *Task) AddExample(text, label string) (uint64, error) {
	return t.addExample(text, nil, label)
}

// AddExamplePair registers a labelled pair of texts; returns its id. Only a pair task
// (a template reading two sentences, not multi-label) takes pairs, and it takes nothing else.
func (t *Task) AddExamplePair(text, textB, label string) (uint64, error) {
	return t.addExample(text, &textB, label)
}

func (t *Task) addExample(text string, textB *string, label string) (uint64, error) {
	defer runtime.KeepAlive(t) // the finalizer must not free the task during a call
	var cs cstrings
	defer cs.free()
	a, b, l := cs.add("text", text), cs.ptr("textB", textB), cs.add("label", label)
	if cs.err != nil {
		return 0, cs.err
	}
	var id C.uint64_t
	err := t.call(func(h *C.lmbff_task) C.lmbff_status { return C.lmbff_task_add_example(h, a, b, l, &id) })
	return uint64(id), err
}

// AddUnlabeled registers an unlabeled text; returns its id.
func (t *Task) AddUnlabeled(text string) (uint64, error) {
	return t.addUnlabeled(text, nil)
}

// AddUnlabeledPair registers an unlabeled pair of texts (pair tasks only); returns its id.
func (t *Task) AddUnlabeledPair(text, textB string) (uint64, error) {
	return t.addUnlabeled(text, &textB)
}

func (t *Task) addUnlabeled(text string, textB *string) (uint64, error) {
	defer runtime.KeepAlive(t) // the finalizer must not free the task during a call
	var cs cstrings
	defer cs.free()
	a, b := cs.add("text", text), cs.ptr("textB", textB)
	if cs.err != nil {
		return 0, cs.err
	}
	var id C.uint64_t
	err := t.call(func(h *C.lmbff_task) C.lmbff_status { return C.lmbff_task_add_unlabeled(h, a, b, &id) })
	return uint64(id), err
}

// Remove removes the example or unlabeled text id.
func (t *Task) Remove(id uint64) error {
	defer runtime.KeepAlive(t) // the finalizer must not free the task during a call
	return t.call(func(h *C.lmbff_task) C.lmbff_status { return C.lmbff_task_remove(h, C.uint64_t(id)) })
}

// Relabel sets the label of item id (an unlabeled text becomes an example).
func (t *Task) Relabel(id uint64, label string) error {
	defer runtime.KeepAlive(t) // the finalizer must not free the task during a call
	var cs cstrings
	defer cs.free()
	l := cs.add("label", label)
	if cs.err != nil {
		return cs.err
	}
	return t.call(func(h *C.lmbff_task) C.lmbff_status { return C.lmbff_task_relabel(h, C.uint64_t(id), l) })
}

// SetDev marks labelled example id as a dev example (held out of training; it picks the
// kept weights and, with TrainParams.Calibrate, fits the temperature) or back.
func (t *Task) SetDev(id uint64, dev bool) error {
	defer runtime.KeepAlive(t) // the finalizer must not free the task during a call
	return t.call(func(h *C.lmbff_task) C.lmbff_status { return C.lmbff_task_set_dev(h, C.uint64_t(id), C.bool(dev)) })
}

// NumDev is the number of dev examples (0 once closed).
func (t *Task) NumDev() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return int(C.lmbff_task_num_dev(t.t))
}

// Counts are the labelled examples per class (in the order of Labels) and the number
// of unlabeled texts.
func (t *Task) Counts() (examples []int, unlabeled int, err error) {
	defer runtime.KeepAlive(t) // the finalizer must not free the task during a call
	// One snapshot: the lock is held across the labels (a registration by another
	// goroutine between two of them mixed two states), and their number is the task's
	// own, not Labels', which a caller may change.
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.t == nil {
		return nil, 0, invalid("the task is closed")
	}
	examples = make([]int, int(C.lmbff_task_num_labels(t.t)))
	for i := range examples {
		var n, free C.size_t
		if err := call(func() C.lmbff_status { return C.lmbff_task_counts(t.t, C.size_t(i), &n, &free) }); err != nil {
			return nil, 0, err
		}
		examples[i], unlabeled = int(n), int(free)
	}
	return examples, unlabeled, nil
}

// Save writes the task to dir (model versions are stored there too, under models/).
func (t *Task) Save(dir string) error {
	defer runtime.KeepAlive(t) // the finalizer must not free the task during a call
	var cs cstrings
	defer cs.free()
	d := cs.add("dir", dir)
	if cs.err != nil {
		return cs.err
	}
	return t.call(func(h *C.lmbff_task) C.lmbff_status { return C.lmbff_task_save(h, d) })
}

// TrainParams of a run; zero fields take the library's defaults.
type TrainParams struct {
	Steps, BatchSize int
	// LearningRate 0 keeps the library's default; a negative one is an error.
	LearningRate float64
	// Seed 0 keeps the library's default, 42 (seed 0 itself cannot be asked for here).
	Seed      uint64
	WarmStart string
	// Device trains on DeviceAuto (the zero value: CUDA when the machine has it, else
	// the CPU), DeviceCPU or DeviceCUDA; DeviceIndex picks the GPU.
	Device      Device
	DeviceIndex int
	// AdaptationSteps of masked-LM adaptation on the task's texts before fine-tuning.
	AdaptationSteps int
	// Demonstrations appends one labelled example per class to every input (LM-BFF);
	// the version then predicts with DemoSets fixed sets (default 1), logits averaged.
	Demonstrations bool
	DemoSets       int
	// DemoFilter picks each input's demonstrations from the most similar half of each
	// class (LM-BFF's demo_filter), ranked by the sentence encoder in DemoFilterModel
	// (an HF model directory; empty: the task's model). Needs Demonstrations.
	DemoFilter      bool
	DemoFilterModel string
	// Method: MethodAuto (the zero value: the library decides, see lmbff.h),
	// MethodPrompt, MethodSentenceEmbedding or MethodZeroShotWords (no training and no
	// example needed: labels by how close each input's tokens come to the label words).
	Method Method
	// Calibrate fits temperature scaling on the dev examples (SetDev), so that the
	// version's probabilities match its accuracy; exports divide the logits by it.
	Calibrate bool
	// DisableLabelAnchors trains the sentence-embedding method as SetFit publishes it,
	// without the template's text and each label word ("It was great.") as extra
	// examples of their class (the zero value keeps them). A multi-label task's
	// anchors are its labels' names.
	DisableLabelAnchors bool
	// AnchorTemplates are further single-sentence templates whose texts are label
	// anchors too ("{text} A truly {mask} movie." adds "A truly great movie."): more
	// phrasings of the prompt for the sentence-embedding method (nil: none).
	AnchorTemplates []string
	// EmbeddingMaxSteps caps the sentence-embedding method's contrastive steps (0: the
	// library's default, 2000; negative: no cap, SetFit's whole schedule of 2.5 steps
	// per example and anchor copy; above 4294967295: 4294967295).
	EmbeddingMaxSteps int
}

// Device of a training run (lmbff_train_params.device).
type Device int

const (
	DeviceAuto Device = C.LMBFF_DEVICE_AUTO
	DeviceCPU  Device = C.LMBFF_DEVICE_CPU
	DeviceCUDA Device = C.LMBFF_DEVICE_CUDA
)

// Method of a training run (lmbff_train_params.method).
type Method int

const (
	MethodAuto              Method = C.LMBFF_METHOD_AUTO
	MethodPrompt            Method = C.LMBFF_METHOD_PROMPT
	MethodSentenceEmbedding Method = C.LMBFF_METHOD_SENTENCE_EMBEDDING
	MethodZeroShotWords     Method = C.LMBFF_METHOD_ZERO_SHOT_WORDS
)

// Train trains a new model version in lmbff's background thread and returns its name.
// progress (may be nil) is called with the step as the run goes; cancelling ctx cancels
// the run, and a ctx done already starts none (the error then matches ErrCancelled and
// ctx's error: context.Canceled or context.DeadlineExceeded). A cancel that comes too
// late (the run had decided its outcome, or its saved version could not be deleted, as
// lmbff_run_cancel says) returns the version and a nil error although ctx is done: the
// version is what tells whether one was saved, not ctx.Err().
func (t *Task) Train(ctx context.Context, p TrainParams, progress func(step, total int)) (string, error) {
	defer runtime.KeepAlive(t) // the finalizer must not free the task during a call
	if err := ctx.Err(); err != nil {
		return "", &Error{Code: int(C.LMBFF_ERR_CANCELLED), Name: "CANCELLED", Message: "the context was done before the run started: " + err.Error(), cause: err}
	}
	var cs cstrings
	defer cs.free()
	var params C.lmbff_train_params
	// Filled through _params_init with this binding's size: a later library whose struct
	// has grown fills only these bytes (its by-value defaults would overflow them).
	if err := call(func() C.lmbff_status { return C.lmbff_train_params_init(&params, C.size_t(unsafe.Sizeof(params))) }); err != nil {
		return "", err
	}
	device, err := int32Arg("Device", int(p.Device))
	if err != nil {
		return "", err
	}
	params.device = device
	// Negative counts are refused, not taken for the default.
	counts := []struct {
		name  string
		value int
		field *C.uint32_t
	}{
		{"DeviceIndex", p.DeviceIndex, &params.device_index}, {"Steps", p.Steps, &params.steps},
		{"BatchSize", p.BatchSize, &params.batch_size}, {"AdaptationSteps", p.AdaptationSteps, &params.adaptation_steps},
		{"DemoSets", p.DemoSets, &params.demo_sets},
	}
	for _, n := range counts {
		v, err := uint32Arg(n.name, n.value)
		if err != nil {
			return "", err
		}
		if n.value > 0 { // 0 keeps the library's default (device 0 for DeviceIndex)
			*n.field = v
		}
	}
	if p.LearningRate != 0 { // a negative or NaN rate is the library's to refuse
		params.learning_rate = C.double(p.LearningRate)
	}
	if p.Seed > 0 {
		params.seed = C.uint64_t(p.Seed)
	}
	params.warm_start = cs.opt("WarmStart", p.WarmStart)
	params.demonstrations = C.bool(p.Demonstrations)
	if params.method, err = int32Arg("Method", int(p.Method)); err != nil {
		return "", err
	}
	params.calibrate = C.bool(p.Calibrate)
	params.disable_label_anchors = C.bool(p.DisableLabelAnchors)
	if len(p.AnchorTemplates) > 0 {
		params.anchor_templates = cs.array("AnchorTemplates", p.AnchorTemplates)
		params.num_anchor_templates = C.size_t(len(p.AnchorTemplates))
	}
	switch n := p.EmbeddingMaxSteps; {
	case n < 0:
		params.embedding_max_steps = 0
	case uint64(n) > math.MaxUint32:
		params.embedding_max_steps = C.uint32_t(math.MaxUint32)
	case n > 0:
		params.embedding_max_steps = C.uint32_t(n)
	}
	params.demo_filter = C.bool(p.DemoFilter)
	params.demo_filter_model = cs.opt("DemoFilterModel", p.DemoFilterModel)
	if cs.err != nil {
		return "", cs.err
	}
	var run *C.lmbff_run
	if err := t.call(func(h *C.lmbff_task) C.lmbff_status { return C.lmbff_train_start(h, &params, nil, nil, &run) }); err != nil {
		return "", err
	}
	defer C.lmbff_run_free(run)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	done := ctx.Done()
	for {
		var state C.int32_t
		var step, total C.size_t
		// A failed poll ends the wait: lmbff_run_free, deferred, cancels the run and
		// waits for it.
		if err := call(func() C.lmbff_status { return C.lmbff_run_poll(run, &state, &step, &total) }); err != nil {
			return "", err
		}
		if progress != nil {
			progress(int(step), int(total))
		}
		if state != C.LMBFF_RUN_RUNNING {
			break
		}
		select {
		case <-done:
			// Once: a closed channel stays ready, and the run may take a while to stop.
			C.lmbff_run_cancel(run)
			done = nil
		case <-tick.C:
		}
	}
	if err := call(func() C.lmbff_status { return C.lmbff_run_wait(run) }); err != nil {
		var e *Error
		if errors.As(err, &e) && e.Code == int(C.LMBFF_ERR_CANCELLED) {
			e.cause = ctx.Err()
		}
		return "", err
	}
	return C.GoString(C.lmbff_run_version(run)), nil
}

// Versions are the task's model versions, oldest first.
func (t *Task) Versions() ([]string, error) {
	defer runtime.KeepAlive(t) // the finalizer must not free the task during a call
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.t == nil {
		return nil, invalid("the task is closed")
	}
	list, err := copyOut(func(buf *C.char, capacity C.size_t, needed *C.size_t) C.lmbff_status {
		return C.lmbff_task_versions(t.t, buf, capacity, needed)
	})
	if err != nil || len(list) == 0 {
		return nil, err
	}
	return strings.Split(string(list), "\n"), nil
}

// DeleteVersion deletes model version `version`.
func (t *Task) DeleteVersion(version string) error {
	defer runtime.KeepAlive(t) // the finalizer must not free the task during a call
	var cs cstrings
	defer cs.free()
	v := cs.add("version", version)
	if cs.err != nil {
		return cs.err
	}
	return t.call(func(h *C.lmbff_task) C.lmbff_status { return C.lmbff_task_delete_version(h, v) })
}

// Export writes model version `version` to an export directory for OpenPredictor;
// fp16 stores weight matrices as fp16. It does not hold the task: other calls on it go
// on while it exports, and Close waits for it.
func (t *Task) Export(version, outDir string, fp16 bool) error {
	defer runtime.KeepAlive(t) // the finalizer must not free the task during a call
	var cs cstrings
	defer cs.free()
	v, out := cs.add("version", version), cs.add("outDir", outDir)
	if cs.err != nil {
		return cs.err
	}
	// The export does not take the task (lmbff.h): the other calls go on meanwhile, and
	// only Close waits for it.
	t.mu.Lock()
	h := t.t
	if h != nil {
		t.exports.Add(1)
	}
	t.mu.Unlock()
	if h == nil {
		return invalid("the task is closed")
	}
	defer t.exports.Done()
	return call(func() C.lmbff_status { return C.lmbff_task_export(h, v, out, C.bool(fp16)) })
}

// Close frees the task once the calls in flight, if any, have returned (unsaved
// registrations are lost; a run already training goes on, on its snapshot); a second
// Close does nothing.
func (t *Task) Close() error {
	runtime.SetFinalizer(t, nil)
	t.mu.Lock()
	h := t.t
	t.t = nil
	t.mu.Unlock()
	if h != nil {
		t.exports.Wait()
		C.lmbff_task_free(h)
	}
	return nil
}
