package lmbff

/*
#include <stdint.h>
#include "lmbff.h"

lmbff_status lmbff_go_set_log(int32_t max_level, uintptr_t handle);
*/
import "C"

import (
	"fmt"
	"os"
	"runtime/cgo"
	"sync"
)

// LogLevel is the severity of a log message, most severe first.
type LogLevel int

// The levels of SetLogger.
const (
	LogError LogLevel = C.LMBFF_LOG_ERROR
	LogWarn  LogLevel = C.LMBFF_LOG_WARN
	LogInfo  LogLevel = C.LMBFF_LOG_INFO
	LogDebug LogLevel = C.LMBFF_LOG_DEBUG
)

func (l LogLevel) String() string {
	switch l {
	case LogError:
		return "error"
	case LogWarn:
		return "warn"
	case LogInfo:
		return "info"
	case LogDebug:
		return "debug"
	}
	return fmt.Sprintf("LogLevel(%d)", int(l))
}

// logger is the handle of the function set by SetLogger (0: none).
var logger struct {
	sync.Mutex
	h cgo.Handle
}

// SetLogger sends the library's messages up to maxLevel to fn; nil stops logging (the
// default: nothing is printed). Process-wide. fn may be called from any thread, also
// lmbff's training thread, and must not call lmbff itself, nor wait on a goroutine that
// calls SetLogger (which waits for the callbacks running elsewhere to return).
func SetLogger(fn func(level LogLevel, message string), maxLevel LogLevel) error {
	level, err := int32Arg("maxLevel", int(maxLevel))
	if err != nil {
		return err
	}
	logger.Lock()
	defer logger.Unlock()
	var h cgo.Handle
	if fn != nil {
		h = cgo.NewHandle(fn)
	}
	if err := call(func() C.lmbff_status { return C.lmbff_go_set_log(level, C.uintptr_t(h)) }); err != nil {
		if h != 0 {
			h.Delete()
		}
		return err
	}
	// The library no longer calls the previous function once the call above returns.
	if logger.h != 0 {
		logger.h.Delete()
	}
	logger.h = h
	return nil
}

// loggerPanicked is set once a logger has panicked (reported once, on stderr).
var loggerPanicked sync.Once

//export lmbffGoLog
func lmbffGoLog(level C.int32_t, message *C.char, handle C.uintptr_t) {
	// A panic must not leave this function: it would unwind through lmbff's frames,
	// which Go cannot do (the process dies, or lmbff's logger lock stays held and the
	// next SetLogger waits forever). The message is dropped and the panic reported once,
	// as a panicking http.Handler is.
	defer func() {
		if r := recover(); r != nil {
			loggerPanicked.Do(func() {
				fmt.Fprintf(os.Stderr, "lmbff: the logger panicked (reported once; its messages that panic are dropped): %v\n", r)
			})
		}
	}()
	fn := cgo.Handle(handle).Value().(func(LogLevel, string))
	fn(LogLevel(level), C.GoString(message))
}
