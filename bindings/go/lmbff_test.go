package lmbff

import (
	"bufio"
	"context"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var _ io.Closer = (*Predictor)(nil)
var _ io.Closer = (*Task)(nil)

func defaultModel(t *testing.T) string {
	m := os.Getenv("LMBFF_DEFAULT_MODEL")
	if m == "" {
		t.Fatal("LMBFF_DEFAULT_MODEL is not set: run through scripts/test (source scripts/env.sh)")
	}
	return m
}

func TestErrors(t *testing.T) {
	if !strings.HasPrefix(Version(), "0.") {
		t.Fatalf("version %q", Version())
	}
	_, err := OpenPredictor(filepath.Join(t.TempDir(), "missing"), 1)
	var e *Error
	if !errors.As(err, &e) || e.Name != "INVALID_ARGUMENT" || !strings.Contains(e.Message, "does not exist") {
		t.Fatalf("got %v", err)
	}
	_, err = NewTask(defaultModel(t), "{text} It was {mask}.", []string{"0", "1"}, []string{"terrible", "zzzqqqx"})
	if !errors.As(err, &e) || e.Name != "MODEL" {
		t.Fatalf("got %v", err)
	}
}

// The annotation loop: register, train (progress; context cancellation), export, predict.
func TestTrainExportPredict(t *testing.T) {
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
	version, err := task.Train(context.Background(), TrainParams{Steps: 6, BatchSize: 4}, func(step, total int) { last = step })
	if err != nil || version != "v1" || last != 6 {
		t.Fatalf("version %q, last step %d, err %v", version, last, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := task.Train(ctx, TrainParams{Steps: 100000}, nil); !errors.Is(err, ErrCancelled) {
		t.Fatalf("cancelled run: %v", err)
	}
	out := filepath.Join(dir, "export")
	if err := task.Export(version, out); err != nil {
		t.Fatal(err)
	}
	p, err := OpenPredictor(out, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	preds, err := p.Predict([]string{"A delightful film.", "Broken on arrival.", ""})
	if err != nil || len(preds) != 3 {
		t.Fatalf("%v %v", preds, err)
	}
	for _, r := range preds {
		if math.Abs(float64(r.Probs[0]+r.Probs[1])-1) > 1e-5 || r.Margin < 0 || (r.Label != "0" && r.Label != "1") {
			t.Fatalf("bad prediction %+v", r)
		}
	}
	p.Close()
	if _, err := p.Predict([]string{"x"}); err == nil {
		t.Fatal("a closed predictor predicted")
	}
}
