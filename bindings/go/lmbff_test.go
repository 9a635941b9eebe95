package lmbff

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var _ io.Closer = (*Predictor)(nil)
var _ io.Closer = (*Predictions)(nil)
var _ io.Closer = (*Task)(nil)

func defaultModel(t *testing.T) string {
	m := os.Getenv("LMBFF_DEFAULT_MODEL")
	if m == "" {
		t.Fatal("LMBFF_DEFAULT_MODEL is not set: run through scripts/test (source scripts/env.sh)")
	}
	return m
}

// wantCode fails unless err is an *Error with status name `name`.
func wantCode(t *testing.T, err error, name string) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) || e.Name != name || e.Code != indexOf(statusNames, name) || e.Message == "" {
		t.Fatalf("want a %s *Error, got %v", name, err)
	}
}

func indexOf(ss []string, s string) int {
	for i, x := range ss {
		if x == s {
			return i
		}
	}
	return -1
}

func TestErrors(t *testing.T) {
	if !strings.HasPrefix(Version(), "0.") {
		t.Fatalf("version %q", Version())
	}
	_, err := OpenPredictor(filepath.Join(t.TempDir(), "missing"), 1)
	var e *Error
	if !errors.As(err, &e) || e.Name != "IO" || !strings.Contains(e.Message, "does not exist") {
		t.Fatalf("got %v", err)
	}
	_, err = NewTask(defaultModel(t), "{text} It was {mask}.", []string{"0", "1"}, []string{"terrible", "☃☃"})
	if !errors.As(err, &e) || e.Name != "MODEL" {
		t.Fatalf("got %v", err)
	}
	_, err = NewTask(defaultModel(t), "{text} It was {mask}.", []string{"0", "1\x00junk"}, []string{"terrible", "great"})
	if !errors.As(err, &e) || e.Name != "INVALID_ARGUMENT" || !strings.Contains(e.Message, "Labels[1] holds a NUL byte") {
		t.Fatalf("got %v", err)
	}
	_, err = CreateTask(TaskParams{ModelDir: defaultModel(t), Labels: []string{"0", "1"}, LabelWords: []string{"terrible", "great"}, MaxLen: -5})
	wantCode(t, err, "INVALID_ARGUMENT")
	_, err = CreateTask(TaskParams{ModelDir: defaultModel(t), Labels: []string{"0", "1"}, LabelWords: []string{"terrible"}})
	wantCode(t, err, "INVALID_ARGUMENT")
	_, err = CreateTask(TaskParams{ModelDir: defaultModel(t), Labels: []string{"a", "b"}, LabelWords: []string{"No"}, MultiLabel: true})
	wantCode(t, err, "INVALID_ARGUMENT")
	// Too few labels is named as such, not as missing label words.
	_, err = CreateTask(TaskParams{ModelDir: defaultModel(t), Labels: []string{"only"}})
	if err == nil || !strings.Contains(err.Error(), "at least two labels, got 1") {
		t.Fatalf("got %v", err)
	}
	_, err = CreateTask(TaskParams{ModelDir: defaultModel(t), MultiLabel: true})
	if err == nil || !strings.Contains(err.Error(), "at least one label, got 0") {
		t.Fatalf("got %v", err)
	}
}

// A logger that panics loses its message, not the process: the call that logged
// succeeds, and the logger can be replaced afterwards (a panic that unwound through
// lmbff left its logger lock held, and the next SetLogger waited forever).
func TestPanickingLogger(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "export")
	cmd := exec.Command("../../target/release/lmbff", "export", "--model", defaultModel(t), "--out", dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("lmbff export: %v\n%s", err, out)
	}
	if err := SetLogger(func(LogLevel, string) { panic("logger bug") }, LogInfo); err != nil {
		t.Fatal(err)
	}
	defer SetLogger(nil, LogError)
	p, err := OpenPredictor(dir, 1) // logs "predictor opened" through the panicking logger
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	var got []string
	var mu sync.Mutex
	done := make(chan error, 1)
	go func() {
		done <- SetLogger(func(_ LogLevel, m string) { mu.Lock(); got = append(got, m); mu.Unlock() }, LogInfo)
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("SetLogger did not return after a logger panicked")
	}
	if p, err = OpenPredictor(dir, 1); err != nil {
		t.Fatal(err)
	}
	p.Close()
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(strings.Join(got, "\n"), "predictor opened") {
		t.Fatalf("the new logger got %q", got)
	}
}

func TestLibrary(t *testing.T) {
	if ABIVersion() != HeaderABIVersion {
		t.Fatalf("library ABI %d, header %d", ABIVersion(), HeaderABIVersion)
	}
	// A library of another ABI version is refused by the calls that open or make
	// something, by name, before any call into it.
	if err := abiMismatch(HeaderABIVersion); err != nil {
		t.Fatal(err)
	}
	wantCode(t, abiMismatch(HeaderABIVersion+1), "INVALID_ARGUMENT")
	if err := abiMismatch(HeaderABIVersion + 1); !strings.Contains(err.Error(), fmt.Sprintf("C ABI version %d", HeaderABIVersion+1)) {
		t.Fatal(err)
	}
	if !HasTraining() {
		t.Fatal("the full build reports no training")
	}
	// 0 is all cores, as a predictor's threads 0.
	for _, n := range []int{0, 1} {
		if err := SetTorchThreads(n); err != nil {
			t.Fatal(n, err)
		}
	}
	// Out of the library's range (1 to 256, or the hardware threads where there are more),
	// or of uint32_t's: refused, not wrapped.
	for _, n := range []int{-1, 1 << 20, 1 << 32} {
		wantCode(t, SetTorchThreads(n), "INVALID_ARGUMENT")
	}
	wantCode(t, SetLogger(func(LogLevel, string) {}, LogLevel(9)), "INVALID_ARGUMENT")
	// A level past int32_t is refused, not wrapped to LogDebug.
	wantCode(t, SetLogger(func(LogLevel, string) {}, LogLevel(1<<32|int(LogDebug))), "INVALID_ARGUMENT")
}

// Registering, relabelling and removing change the counts; a saved task reopens as it was.
func TestTaskEditing(t *testing.T) {
	task, err := CreateTask(TaskParams{ModelDir: defaultModel(t), Template: "{text_a} ? {mask} , {text_b}",
		Labels: []string{"no", "yes"}, LabelWords: []string{"No", "Yes"}, MaxLen: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer task.Close()
	if !reflect.DeepEqual(task.Labels, []string{"no", "yes"}) {
		t.Fatalf("labels %q", task.Labels)
	}
	counts := func(wantExamples []int, wantUnlabeled int) {
		t.Helper()
		ex, un, err := task.Counts()
		if err != nil || !reflect.DeepEqual(ex, wantExamples) || un != wantUnlabeled {
			t.Fatalf("counts %v %d (%v), want %v %d", ex, un, err, wantExamples, wantUnlabeled)
		}
	}
	a, err := task.AddExamplePair("It rains.", "The street is wet.", "yes")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := task.AddExamplePair("It is sunny.", "The street is flooded.", "no"); err != nil {
		t.Fatal(err)
	}
	u, err := task.AddUnlabeledPair("A cat sleeps.", "An animal rests.")
	if err != nil {
		t.Fatal(err)
	}
	// A pair task's texts come in pairs: a lone one is refused when added.
	_, err = task.AddUnlabeled("A lone text.")
	wantCode(t, err, "INVALID_ARGUMENT")
	if _, err := task.AddUnlabeledPair("A dog barks.", "An animal is loud."); err != nil {
		t.Fatal(err)
	}
	counts([]int{1, 1}, 2)
	if err := task.Relabel(u, "yes"); err != nil {
		t.Fatal(err)
	}
	counts([]int{1, 2}, 1)
	if err := task.Relabel(a, "no"); err != nil {
		t.Fatal(err)
	}
	counts([]int{2, 1}, 1)
	// The task's own classes are counted, whatever a caller does to Labels.
	saved := task.Labels
	task.Labels = task.Labels[:1]
	counts([]int{2, 1}, 1)
	task.Labels = saved
	if err := task.Remove(a); err != nil {
		t.Fatal(err)
	}
	counts([]int{1, 1}, 1)
	wantCode(t, task.Remove(a), "INVALID_ARGUMENT")
	wantCode(t, task.Relabel(u, "maybe"), "INVALID_ARGUMENT")
	if v, err := task.Versions(); err != nil || v != nil {
		t.Fatalf("an unsaved task has versions %q (%v)", v, err)
	}

	dir := filepath.Join(t.TempDir(), "task")
	if err := task.Save(dir); err != nil {
		t.Fatal(err)
	}
	task.Close()
	// A second Close does nothing; a call after it is refused, not a use of freed memory.
	if err := task.Close(); err != nil {
		t.Fatal(err)
	}
	wantCode(t, task.Remove(u), "INVALID_ARGUMENT")
	// Tasks dropped without Close are freed by their finalizer (here, before the test
	// ends, while the reopened task below is in use).
	for i := 0; i < 3; i++ {
		if _, err := OpenTask(dir); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.GC()
	if task, err = OpenTask(dir); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(task.Labels, []string{"no", "yes"}) {
		t.Fatalf("reopened labels %q", task.Labels)
	}
	counts([]int{1, 1}, 1)
	if v, err := task.Versions(); err != nil || v != nil {
		t.Fatalf("an untrained task has versions %q (%v)", v, err)
	}
	_, err = OpenTask(filepath.Join(t.TempDir(), "missing"))
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("opening a missing task: %v", err)
	}
	// Goroutines sharing the task take turns (the C side alone would answer one of two
	// racing calls BUSY), and a closed task says so.
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				if _, err := task.AddUnlabeledPair(fmt.Sprintf("text %d %d", g, i), "second"); err != nil {
					errs <- err
				}
				if _, _, err := task.Counts(); err != nil {
					errs <- err
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("a call from several goroutines: %v", err)
	}
	counts([]int{1, 1}, 401)
	task.Close()
	if _, err := task.AddExamplePair("a", "b", "yes"); err == nil || !strings.Contains(err.Error(), "the task is closed") {
		t.Fatalf("a closed task: %v", err)
	}
	if _, err := task.Versions(); err == nil || !strings.Contains(err.Error(), "the task is closed") || task.NumDev() != 0 {
		t.Fatalf("a closed task's versions: %v", err)
	}
}

// The annotation loop: register, train (progress; context cancellation; a warm start),
// versions, export, predict, Label Studio JSON, logging from lmbff's training thread.
func TestTrainExportPredict(t *testing.T) {
	var mu sync.Mutex
	var logged []string
	if err := SetLogger(func(level LogLevel, message string) {
		mu.Lock()
		defer mu.Unlock()
		logged = append(logged, level.String()+": "+message)
	}, LogInfo); err != nil {
		t.Fatal(err)
	}
	defer SetLogger(nil, LogError)

	task, err := NewTask(defaultModel(t), "{text} It was {mask}.", []string{"0", "1"}, []string{"terrible", "great"})
	if err != nil {
		t.Fatal(err)
	}
	defer task.Close()
	f, err := os.Open("../../data/reviews/train.tsv")
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for n := 0; n < 16 && sc.Scan(); n++ {
		cols := strings.Split(sc.Text(), "\t")
		if _, err := task.AddExample(cols[0], cols[1]); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	if _, err := task.AddExample("x", "maybe"); err == nil {
		t.Fatal("an unknown label was accepted")
	}
	dir := t.TempDir()
	if err := task.Save(filepath.Join(dir, "task")); err != nil {
		t.Fatal(err)
	}
	last := 0
	version, err := task.Train(context.Background(), TrainParams{Steps: 6, BatchSize: 4, Method: MethodPrompt}, func(step, total int) { last = step })
	if err != nil || version != "v1" || last != 6 {
		t.Fatalf("version %q, last step %d, err %v", version, last, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	// Progress is polled every 20 ms, also while a cancelled run winds down (a closed
	// ctx.Done() must not turn the loop into a spin).
	polls, started := 0, time.Now()
	if _, err := task.Train(ctx, TrainParams{Steps: 100000, Method: MethodPrompt}, func(int, int) { polls++ }); !errors.Is(err, ErrCancelled) {
		t.Fatalf("cancelled run: %v", err)
	}
	if limit := int(time.Since(started)/(20*time.Millisecond)) + 5; polls > limit {
		t.Fatalf("%d progress polls in %v: the loop spun after the cancel", polls, time.Since(started))
	}
	// The error carries the context's too; a context done already starts no run.
	if _, err := task.Train(ctx, TrainParams{Steps: 6, Method: MethodPrompt}, nil); !errors.Is(err, ErrCancelled) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a done context: %v", err)
	}
	if v, err := task.Versions(); err != nil || len(v) != 1 {
		t.Fatalf("versions after the cancelled runs: %q (%v)", v, err)
	}
	if _, err := task.Train(context.Background(), TrainParams{Steps: 1, Device: Device(7)}, nil); err == nil || !strings.Contains(err.Error(), "INVALID_ARGUMENT") {
		t.Fatalf("device 7: %v", err)
	}
	mu.Lock()
	if !strings.Contains(strings.Join(logged, "\n"), "info: saved model version v1") {
		t.Fatalf("the training thread logged %q", logged)
	}
	mu.Unlock()

	// Versions: a warm-started second one with demonstrations (its export predicts
	// with 2 fixed sets), deleted again.
	if v2, err := task.Train(context.Background(), TrainParams{Steps: 2, BatchSize: 4, WarmStart: version, Demonstrations: true, DemoSets: 2}, nil); err != nil || v2 != "v2" {
		t.Fatalf("warm start: %q %v", v2, err)
	}
	demoOut := filepath.Join(dir, "export-v2")
	if err := task.Export("v2", demoOut, false); err != nil {
		t.Fatal(err)
	}
	var exported struct {
		Demonstrations struct{ Sets [][]struct{ Label int } }
	}
	if raw, err := os.ReadFile(filepath.Join(demoOut, "lmbff-export.json")); err != nil || json.Unmarshal(raw, &exported) != nil {
		t.Fatalf("reading the v2 manifest: %v", err)
	}
	if sets := exported.Demonstrations.Sets; len(sets) != 2 || len(sets[0]) != 2 || sets[0][0].Label != 0 || sets[0][1].Label != 1 {
		t.Fatalf("v2 demonstration sets: %+v", sets)
	}
	if v, err := task.Versions(); err != nil || !reflect.DeepEqual(v, []string{"v1", "v2"}) {
		t.Fatalf("versions %q (%v)", v, err)
	}
	if err := task.DeleteVersion("v2"); err != nil {
		t.Fatal(err)
	}
	// Similarity-filtered demonstrations, ranked by the task's model: the export carries
	// the encoder, and the predictor picks each input's sets.
	// A deleted version's number is never given again: v2 was deleted above.
	if v, err := task.Train(context.Background(), TrainParams{Steps: 2, BatchSize: 4, Method: MethodPrompt, Demonstrations: true, DemoSets: 2, DemoFilter: true}, nil); err != nil || v != "v3" {
		t.Fatalf("filtered demonstrations: %q %v", v, err)
	}
	filterOut := filepath.Join(dir, "export-filter")
	if err := task.Export("v3", filterOut, false); err != nil {
		t.Fatal(err)
	}
	var filtered struct {
		Demonstrations struct {
			Filter struct {
				Sets int
				File string
			}
		}
	}
	if raw, err := os.ReadFile(filepath.Join(filterOut, "lmbff-export.json")); err != nil || json.Unmarshal(raw, &filtered) != nil || filtered.Demonstrations.Filter.Sets != 2 {
		t.Fatalf("the filtered export's manifest: %+v (%v)", filtered, err)
	}
	fp, err := OpenPredictor(filterOut, 1)
	if err != nil {
		t.Fatal(err)
	}
	if preds, err := fp.Predict([]string{"A delightful film.", "A dull one."}); err != nil || len(preds) != 2 {
		t.Fatalf("filtered predictions: %+v %v", preds, err)
	}
	fp.Close()
	if err := task.DeleteVersion("v3"); err != nil {
		t.Fatal(err)
	}
	// A multi-label task: an example's labels separated by "|" ("" for none), one yes/no
	// prompt per label; its export gives each label's own probability.
	multi, err := CreateTask(TaskParams{ModelDir: defaultModel(t), Labels: []string{"plot", "acting"}, MultiLabel: true})
	if err != nil {
		t.Fatal(err)
	}
	defer multi.Close()
	for _, ex := range [][2]string{{"The plot was thin.", "plot"}, {"Great acting and a clever plot.", "plot|acting"}, {"Nothing to say.", ""}, {"The acting was wooden.", "acting"}} {
		if _, err := multi.AddExample(ex[0], ex[1]); err != nil {
			t.Fatal(err)
		}
	}
	devID, err := multi.AddExample("A tense plot and strong acting.", "plot|acting")
	if err != nil || multi.SetDev(devID, true) != nil || multi.NumDev() != 1 {
		t.Fatalf("a dev example: %v", err)
	}
	if err := multi.Save(filepath.Join(dir, "multi")); err != nil {
		t.Fatal(err)
	}
	mv, err := multi.Train(context.Background(), TrainParams{Steps: 2, BatchSize: 4, Calibrate: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := multi.Export(mv, filepath.Join(dir, "export-multi"), false); err != nil {
		t.Fatal(err)
	}
	// A temperature is fitted on the dev example; it is applied (and exported) only
	// where the dev example bounds it (one dev example often does not).
	var saved struct {
		Notes struct {
			Calibration struct {
				Temperature float64
				Applied     bool
			}
		}
	}
	if raw, err := os.ReadFile(filepath.Join(dir, "multi", "models", mv, "lmbff.json")); err != nil || json.Unmarshal(raw, &saved) != nil || saved.Notes.Calibration.Temperature <= 0 {
		t.Fatalf("the version's calibration: %+v (%v)", saved, err)
	}
	var calibrated struct{ Temperature *float64 }
	if raw, err := os.ReadFile(filepath.Join(dir, "export-multi", "lmbff-export.json")); err != nil || json.Unmarshal(raw, &calibrated) != nil {
		t.Fatalf("the calibrated export: %v", err)
	}
	fitted := saved.Notes.Calibration
	if fitted.Applied != (calibrated.Temperature != nil) || (calibrated.Temperature != nil && math.Abs(*calibrated.Temperature-fitted.Temperature) > 1e-5) {
		t.Fatalf("fitted %+v, exported %v", fitted, calibrated.Temperature)
	}
	mp, err := OpenPredictor(filepath.Join(dir, "export-multi"), 1)
	if err != nil {
		t.Fatal(err)
	}
	if !mp.MultiLabel || !reflect.DeepEqual(mp.Labels, []string{"plot", "acting"}) {
		t.Fatalf("multi-label predictor: %v %q", mp.MultiLabel, mp.Labels)
	}
	if preds, err := mp.Predict([]string{"The plot was fun."}); err != nil || len(preds[0].Probs) != 2 {
		t.Fatalf("multi-label predictions: %+v %v", preds, err)
	}
	mp.Close()

	// A regression task: scores as labels, checked against the range.
	reg, err := CreateTask(TaskParams{ModelDir: defaultModel(t), Labels: []string{"low", "high"}, LabelWords: []string{"terrible", "great"}, Regression: true, Range: [2]float32{0, 5}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.AddExample("A masterpiece.", "4.5"); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.AddExample("Off the scale.", "7"); err == nil {
		t.Fatal("a score out of range was accepted")
	}
	reg.Close()
	// A zero Range keeps the library's 0 to 1 (it was sent as 0..0 and refused).
	unit, err := CreateTask(TaskParams{ModelDir: defaultModel(t), Labels: []string{"low", "high"}, LabelWords: []string{"terrible", "great"}, Regression: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unit.AddExample("Fine.", "0.5"); err != nil {
		t.Fatal(err)
	}
	if _, err := unit.AddExample("Off the scale.", "2"); err == nil {
		t.Fatal("a score past the default range was accepted")
	}
	unit.Close()

	// The sentence-embedding method: its export says so; a bad method is named.
	wantCode(t, func() error { _, err := task.Train(context.Background(), TrainParams{Method: 7}, nil); return err }(), "INVALID_ARGUMENT")
	// Values past int32_t are refused, not wrapped to a method or device the library knows.
	wantCode(t, func() error {
		_, err := task.Train(context.Background(), TrainParams{Method: Method(1<<32 | int(MethodSentenceEmbedding))}, nil)
		return err
	}(), "INVALID_ARGUMENT")
	wantCode(t, func() error {
		_, err := task.Train(context.Background(), TrainParams{Device: Device(1 << 32)}, nil)
		return err
	}(), "INVALID_ARGUMENT")
	if v, err := task.Train(context.Background(), TrainParams{Method: MethodSentenceEmbedding, LearningRate: 1e-3}, nil); err != nil || v != "v4" {
		t.Fatalf("sentence-embedding run: %q %v", v, err)
	}
	seOut := filepath.Join(dir, "export-se")
	if err := task.Export("v4", seOut, false); err != nil {
		t.Fatal(err)
	}
	var se struct {
		Method string
		Notes  struct {
			MethodReason string   `json:"method_reason"`
			LabelAnchors []string `json:"label_anchors"`
		}
	}
	// Label anchors by default: the template's text with each label word.
	if raw, err := os.ReadFile(filepath.Join(seOut, "lmbff-export.json")); err != nil || json.Unmarshal(raw, &se) != nil || se.Method != "sentence-embedding" || se.Notes.MethodReason != "asked for" ||
		!reflect.DeepEqual(se.Notes.LabelAnchors, []string{"It was terrible.", "It was great."}) {
		t.Fatalf("the sentence-embedding export's manifest: %+v (%v)", se, err)
	}
	if err := task.DeleteVersion("v4"); err != nil {
		t.Fatal(err)
	}
	// Further anchor templates add their texts to the version's anchors.
	// (EmbeddingMaxSteps -1: no cap, so the notes name none.)
	more, err := task.Train(context.Background(), TrainParams{Steps: 2, LearningRate: 1e-3, Method: MethodSentenceEmbedding, AnchorTemplates: []string{"{text} So {mask}."}, EmbeddingMaxSteps: -1}, nil)
	if err != nil {
		t.Fatalf("sentence-embedding run with anchor templates: %v", err)
	}
	var notes struct {
		Notes struct {
			LabelAnchors []string `json:"label_anchors"`
			CappedFrom   *int     `json:"steps_capped_from"`
		}
	}
	if raw, err := os.ReadFile(filepath.Join(dir, "task", "models", more, "lmbff.json")); err != nil || json.Unmarshal(raw, &notes) != nil || notes.Notes.CappedFrom != nil ||
		!reflect.DeepEqual(notes.Notes.LabelAnchors, []string{"It was terrible.", "It was great.", "So terrible.", "So great."}) {
		t.Fatalf("anchors with a further template: %+v (%v)", notes, err)
	}
	if err := task.DeleteVersion(more); err != nil {
		t.Fatal(err)
	}
	// A cap on the contrastive steps: the notes give the steps run and the whole schedule's.
	capped, err := task.Train(context.Background(), TrainParams{LearningRate: 1e-3, Method: MethodSentenceEmbedding, EmbeddingMaxSteps: 2}, nil)
	if err != nil {
		t.Fatalf("sentence-embedding run with a step cap: %v", err)
	}
	var steps struct {
		Notes struct {
			Steps      int `json:"steps"`
			CappedFrom int `json:"steps_capped_from"`
		}
	}
	if raw, err := os.ReadFile(filepath.Join(dir, "task", "models", capped, "lmbff.json")); err != nil || json.Unmarshal(raw, &steps) != nil ||
		steps.Notes.Steps != 2 || steps.Notes.CappedFrom <= 2 {
		t.Fatalf("capped run's notes: %+v (%v)", steps, err)
	}
	if err := task.DeleteVersion(capped); err != nil {
		t.Fatal(err)
	}
	_, err = task.Train(context.Background(), TrainParams{Steps: 2, Method: MethodSentenceEmbedding, AnchorTemplates: []string{"{text_a} ? {mask} , {text_b}"}}, nil)
	wantCode(t, err, "INVALID_ARGUMENT")
	// MethodZeroShotWords trains nothing: a sentence-embedding version whose notes name it.
	zero, err := task.Train(context.Background(), TrainParams{Method: MethodZeroShotWords}, nil)
	if err != nil {
		t.Fatalf("zero-shot-words run: %v", err)
	}
	var zm struct {
		Method string
		Notes  struct{ Method string }
	}
	if raw, err := os.ReadFile(filepath.Join(dir, "task", "models", zero, "lmbff.json")); err != nil || json.Unmarshal(raw, &zm) != nil || zm.Method != "sentence-embedding" || zm.Notes.Method != "zero-shot-words" {
		t.Fatalf("the zero-shot-words version's manifest: %+v (%v)", zm, err)
	}
	if err := task.DeleteVersion(zero); err != nil {
		t.Fatal(err)
	}
	if v, err := task.Versions(); err != nil || !reflect.DeepEqual(v, []string{"v1"}) {
		t.Fatalf("versions after deleting v2: %q (%v)", v, err)
	}
	wantCode(t, task.Export("v2", filepath.Join(dir, "gone"), false), "INVALID_ARGUMENT")
	wantCode(t, task.DeleteVersion("v2"), "INVALID_ARGUMENT")

	out := filepath.Join(dir, "export")
	// An export does not hold the task: registering goes on beside it, never BUSY.
	exports := make(chan error, 1)
	go func() { exports <- task.Export(version, out, false) }()
	for i := 0; i < 20; i++ {
		id, err := task.AddUnlabeled(fmt.Sprintf("registered beside the export %d", i))
		if err != nil {
			t.Fatal(err)
		}
		if err := task.Remove(id); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-exports; err != nil {
		t.Fatal(err)
	}
	// Close waits for an export under way (a second handle on the same folder, closed
	// while it exports): the export ends whole, or finds the task closed if Close came
	// first.
	second, err := OpenTask(filepath.Join(dir, "task"))
	if err != nil {
		t.Fatal(err)
	}
	go func() { exports <- second.Export(version, filepath.Join(dir, "export-closing"), false) }()
	second.Close()
	if err := <-exports; err != nil && !strings.Contains(err.Error(), "the task is closed") {
		t.Fatal(err)
	}
	p, err := OpenPredictor(out, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	texts := []string{"A delightful film.", "Broken on arrival.", ""}
	preds, err := p.Predict(texts)
	if err != nil || len(preds) != 3 {
		t.Fatalf("%v %v", preds, err)
	}
	for _, r := range preds {
		if math.Abs(float64(r.Probs[0]+r.Probs[1])-1) > 1e-5 || r.Margin < 0 || (r.Label != "0" && r.Label != "1") {
			t.Fatalf("bad prediction %+v", r)
		}
	}

	// Label Studio JSON of the same predictions; a classifier has no score.
	r, err := p.PredictBatch(texts, nil)
	if err != nil || r.Len() != 3 {
		t.Fatalf("%v %v", r, err)
	}
	defer r.Close()
	_, err = r.Score(0)
	wantCode(t, err, "INVALID_ARGUMENT")
	_, err = r.Get(3)
	wantCode(t, err, "INVALID_ARGUMENT")
	js, err := r.LabelStudioJSON("sentiment", "text", "")
	if err != nil {
		t.Fatal(err)
	}
	var ls []struct {
		ModelVersion string  `json:"model_version"`
		Score        float64 `json:"score"`
		Result       []struct {
			FromName string `json:"from_name"`
			ToName   string `json:"to_name"`
			Type     string `json:"type"`
			Value    struct {
				Choices []string `json:"choices"`
			} `json:"value"`
		} `json:"result"`
	}
	if err := json.Unmarshal(js, &ls); err != nil || len(ls) != 3 {
		t.Fatalf("Label Studio JSON %s: %v", js, err)
	}
	for i, x := range ls {
		top := math.Max(float64(preds[i].Probs[0]), float64(preds[i].Probs[1]))
		if x.ModelVersion == "" || math.Abs(x.Score-top) > 1e-5 || len(x.Result) != 1 {
			t.Fatalf("Label Studio prediction %d: %+v", i, x)
		}
		res := x.Result[0]
		if res.FromName != "sentiment" || res.ToName != "text" || res.Type != "choices" || !reflect.DeepEqual(res.Value.Choices, []string{preds[i].Label}) {
			t.Fatalf("Label Studio result %d: %+v", i, res)
		}
	}
	if js, err = r.LabelStudioJSON("sentiment", "text", "mine-1"); err != nil || json.Unmarshal(js, &ls) != nil || ls[0].ModelVersion != "mine-1" {
		t.Fatalf("named model version: %s %v", js, err)
	}
	mu.Lock()
	if !strings.Contains(strings.Join(logged, "\n"), "info: predictor opened") {
		t.Fatalf("the predictor logged %q", logged)
	}
	mu.Unlock()

	// A task's version directory is a checkpoint: export it directly, fp16.
	out16 := filepath.Join(dir, "export-fp16")
	if err := ExportCheckpoint(filepath.Join(dir, "task", "models", version), out16, true); err != nil {
		t.Fatal(err)
	}
	wantCode(t, ExportCheckpoint(filepath.Join(dir, "missing"), filepath.Join(dir, "none"), false), "IO")
	p16, err := OpenPredictorWith(out16, PredictorOptions{Threads: 1, Sessions: 2, MaxBatch: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer p16.Close()
	if preds16, err := p16.Predict(texts); err != nil || len(preds16) != 3 || math.Abs(float64(preds16[0].Probs[1]-preds[0].Probs[1])) > 1e-2 {
		t.Fatalf("fp16 predictions %v (%v), fp32 %v", preds16, err, preds)
	}

	p.Close()
	if _, err := p.Predict([]string{"x"}); err == nil {
		t.Fatal("a closed predictor predicted")
	}
	if _, err := r.LabelStudioJSON("a", "b", ""); err == nil {
		t.Fatal("Label Studio JSON after the predictor closed")
	}
}

// A regression export of a two-sentence template (made with the CLI): pairs in, scores
// out (score = low + (high - low) * p(upper pole)).
func TestRegressionPairs(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "export")
	cmd := exec.Command("../../target/release/lmbff", "export", "--model", defaultModel(t), "--out", dir,
		"--template", "{text_a} ? {mask} , {text_b}", "--regression", "1,5")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("lmbff export: %v\n%s", err, out)
	}
	p, err := OpenPredictorWith(dir, PredictorOptions{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	// What the export reads, for a host that did not make it.
	if !p.ReadsPairs || !p.Regression || p.Range != [2]float32{1, 5} || p.MultiLabel {
		t.Fatalf("ReadsPairs %v, Regression %v %v, MultiLabel %v", p.ReadsPairs, p.Regression, p.Range, p.MultiLabel)
	}
	a := []string{"The film was fun.", "The plot was thin."}
	b := []string{"I laughed a lot.", "I left early."}
	_, err = p.PredictBatch(a, b[:1])
	wantCode(t, err, "INVALID_ARGUMENT")
	r, err := p.PredictBatch(a, b)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for i := range a {
		pred, err := r.Get(i)
		if err != nil {
			t.Fatal(err)
		}
		score, err := r.Score(i)
		if err != nil || math.Abs(float64(score)-(1+4*float64(pred.Probs[1]))) > 1e-4 || pred.Score != score {
			t.Fatalf("score %v (%v), Get's %v, for probabilities %v", score, err, pred.Score, pred.Probs)
		}
	}
	_, err = r.Score(2)
	wantCode(t, err, "INVALID_ARGUMENT")
	// A negative index is named as given, not wrapped into a huge one.
	_, err = r.Score(-1)
	wantCode(t, err, "INVALID_ARGUMENT")
	if _, err = r.Get(-1); err == nil || !strings.Contains(err.Error(), "index is -1: give 0 to 1") {
		t.Fatalf("got %v", err)
	}
	// No predictions at all: said so (it read "give 0 to -1").
	empty, err := p.PredictBatch([]string{}, []string{})
	if err != nil {
		t.Fatal(err)
	}
	defer empty.Close()
	if _, err = empty.Get(-1); err == nil || !strings.Contains(err.Error(), "index is -1: there are no predictions") {
		t.Fatalf("got %v", err)
	}
}

// Close while other goroutines predict waits for their calls and fails the later ones;
// a string with a NUL byte (which C would read cut short) is refused, named.
func TestCloseWhilePredicting(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "export")
	cmd := exec.Command("../../target/release/lmbff", "export", "--model", defaultModel(t), "--out", dir,
		"--template", "{text_a} ? {mask} , {text_b}", "--regression", "1,5")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("lmbff export: %v\n%s", err, out)
	}
	p, err := OpenPredictorWith(dir, PredictorOptions{Threads: 1, Sessions: 2})
	if err != nil {
		t.Fatal(err)
	}
	a, b := []string{"The film was fun."}, []string{"I laughed a lot."}
	_, err = p.PredictBatch([]string{"The film\x00 was fun."}, b)
	wantCode(t, err, "INVALID_ARGUMENT")
	if !strings.Contains(err.Error(), "texts[0] holds a NUL byte at byte 8") {
		t.Fatalf("got %v", err)
	}
	// Predictions closed by several goroutines at once are freed once; reads after
	// that say they are closed.
	r, err := p.PredictBatch(a, b)
	if err != nil {
		t.Fatal(err)
	}
	var closers sync.WaitGroup
	for g := 0; g < 4; g++ {
		closers.Add(1)
		go func() { defer closers.Done(); r.Close() }()
	}
	closers.Wait()
	if _, err := r.Score(0); err == nil || !strings.Contains(err.Error(), "predictions are closed") || r.Len() != 0 {
		t.Fatalf("after Close: %v, Len %d", err, r.Len())
	}
	var wg sync.WaitGroup
	var predicted, refused int64
	for g := 0; g < 3; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				r, err := p.PredictBatch(a, b)
				if err != nil {
					if !strings.Contains(err.Error(), "predictor is closed") {
						t.Errorf("got %v", err)
					}
					atomic.AddInt64(&refused, 1)
					return
				}
				r.Close()
				atomic.AddInt64(&predicted, 1)
			}
		}()
	}
	// Close once a prediction has finished (a busy machine may take longer than any
	// fixed wait), or after 60 s, which fails below.
	for until := time.Now().Add(60 * time.Second); atomic.LoadInt64(&predicted) == 0 && time.Now().Before(until); {
		time.Sleep(10 * time.Millisecond)
	}
	p.Close()
	wg.Wait()
	if predicted == 0 || refused != 3 {
		t.Fatalf("%d predictions before Close, %d goroutines refused after it", predicted, refused)
	}
}
