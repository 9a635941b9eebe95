// The C side of SetLogger (log.go): lmbff's log callback, forwarding to Go.
#include <stdint.h>
#include "lmbff.h"
#include "_cgo_export.h"

// user_data carries the cgo.Handle of the Go function.
static void forward(int32_t level, const char *message, void *user_data) {
  lmbffGoLog(level, (char *)message, (uintptr_t)user_data);
}

// Sets `forward` with handle as user_data, or no callback for handle 0.
lmbff_status lmbff_go_set_log(int32_t max_level, uintptr_t handle) {
  return lmbff_set_log_callback(handle ? forward : NULL, max_level, (void *)handle);
}
