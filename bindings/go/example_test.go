package lmbff_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"lmbff.dev/lmbff"
)

// The example of docs/hosts/go.md, compiled with the tests (not run: it trains 300
// steps). Keep the two the same.
func Example() {
	if err := annotate(); err != nil {
		fmt.Println(err)
	}
}

func annotate() error {
	task, err := lmbff.NewTask(os.Getenv("LMBFF_DEFAULT_MODEL"), "{text} It was {mask}.",
		[]string{"0", "1"}, []string{"terrible", "great"})
	if err != nil {
		return err
	}
	defer task.Close()
	id, err := task.AddUnlabeled("A warm, funny film.")
	if err != nil {
		return err
	}
	if _, err := task.AddExample("Dull and far too long.", "0"); err != nil {
		return err
	}
	if err := task.Relabel(id, "1"); err != nil { // the unlabeled text becomes an example
		return err
	}
	examples, unlabeled, err := task.Counts() // per label (task.Labels), and the rest
	if err != nil {
		return err
	}
	fmt.Println("examples per label:", examples, "unlabeled:", unlabeled)
	if err := task.Save("runs/go-task"); err != nil { // versions go to runs/go-task/models/
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	version, err := task.Train(ctx, lmbff.TrainParams{Steps: 300}, func(step, total int) {})
	if errors.Is(err, lmbff.ErrCancelled) {
		return fmt.Errorf("the context ended the run: %w", err)
	} else if err != nil {
		return err
	}
	versions, err := task.Versions() // ["v1", ...], oldest first
	if err != nil {
		return err
	}
	fmt.Println("versions:", versions)
	if err := task.Export(version, "runs/go-export", false); err != nil { // true: fp16 weights
		return err
	}
	p, err := lmbff.OpenPredictor("runs/go-export", 0) // or OpenPredictorWith(dir, PredictorOptions{...})
	if err != nil {
		return err
	}
	defer p.Close()
	preds, err := p.Predict([]string{"What a delight."}) // Label, Probs, Margin, Entropy
	if err != nil {
		return err
	}
	fmt.Println(preds[0].Label, preds[0].Probs)
	r, err := p.PredictBatch([]string{"What a delight."}, nil) // results kept in lmbff
	if err != nil {
		return err
	}
	defer r.Close()
	js, err := r.LabelStudioJSON("sentiment", "text", "") // a JSON array, one per input
	if err != nil {
		return err
	}
	fmt.Println(string(js))
	return nil
}
