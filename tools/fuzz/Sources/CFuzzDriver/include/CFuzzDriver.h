// libFuzzer's entry point for programs that have their own main (LLVM >= 11). SwiftPM links an
// executable's entry point as <Target>_main, so each target's @main calls this.
#include <stddef.h>
#include <stdint.h>
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));
