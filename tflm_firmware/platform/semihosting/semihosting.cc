// The semihosting platform (QEMU, tests): stdio, audio files and the store
// file live on the host, reached through newlib's rdimon (`--specs=rdimon.specs`).
// On a board without a debugger attached, the first semihosting call would
// stop the core: use platform/board there.  The host build of the firmware
// uses this file too (SV_HOST: stdio and files are the host's own).
#include <cstdlib>

#include "file_medium.h"
#include "platform.h"

extern "C" void initialise_monitor_handles(void);

#ifndef SV_STORE_PATH
#define SV_STORE_PATH "sv_store.bin"
#endif
#ifndef SV_STORE2_PATH
#define SV_STORE2_PATH "sv_store_2.bin"
#endif

namespace platform {

void InitConsole() {
#ifndef SV_HOST  // the host build has a C runtime of its own
  initialise_monitor_handles();
#endif
}

void Halt(int status) { std::_Exit(status); }

sv::StorageMedium* StoreMedium(int index) {
  // RAM mirrors of the host files (FileMedium writes through in place).
  static uint8_t mirror[sv::kStoreMediumBytes];
  static sv::FileMedium first(SV_STORE_PATH, mirror, sizeof(mirror));
  if (index == 0) return &first;
#ifdef SV_TWO_MODELS
  static uint8_t mirror2[sv::kStoreMediumBytes];
  static sv::FileMedium second(SV_STORE2_PATH, mirror2, sizeof(mirror2));
  if (index == 1) return &second;
#endif
  return nullptr;
}

}  // namespace platform
