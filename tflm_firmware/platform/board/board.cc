// The board platform: no semihosting, so it runs without a debugger attached.
//
// * Console: newlib's stdio retargeted to the CMSDK APB UART0 of the MPS2/MPS3
//   boards (machine.h gives its address; QEMU models it as `-serial`).  For
//   another board, replace UartInit/UartPut/UartGet with its UART driver.
// * Store: sv::FlashMedium over the board's FlashDriver, in the `.sv_store`
//   section that the linker script places on flash sectors (on MPS2/MPS3 and
//   QEMU that memory is SSRAM, modelled by sv::MemoryFlash).  A board with real
//   flash overrides BoardFlash() (weak) with its vendor driver.
// * Audio: only "@buffer" -- the frames computed from what a microphone DMA
//   callback pushes through platform::capture() (mic_example.cc); there are no files.
// * Counter: cycles (platform/cortex_m/counter.cc built with SV_COUNT_CYCLES).
// * Halt: reports "HALT status=N" and requests a system reset (AIRCR); QEMU
//   run with -no-reboot exits there.
#include <sys/stat.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>

#include "flash_medium.h"
#include "machine.h"
#include "platform.h"

#ifndef SV_UART_BAUD
#define SV_UART_BAUD 115200
#endif
#ifndef SV_FLASH_SECTOR_BYTES
#define SV_FLASH_SECTOR_BYTES 4096
#endif
#ifdef SV_TWO_MODELS
#define SV_NUM_STORES 2
#else
#define SV_NUM_STORES 1
#endif

namespace {

volatile uint32_t& Reg(uintptr_t address) { return *reinterpret_cast<volatile uint32_t*>(address); }
// CMSDK APB UART registers.
constexpr uintptr_t kData = machine::kUart0Base + 0x0;
constexpr uintptr_t kState = machine::kUart0Base + 0x4;  // bit 0: TX full, bit 1: RX full
constexpr uintptr_t kCtrl = machine::kUart0Base + 0x8;   // bit 0: TX enable, bit 1: RX enable
constexpr uintptr_t kBaudDiv = machine::kUart0Base + 0x10;
constexpr uintptr_t kAircr = 0xE000ED0Cu;

void UartInit() {
  Reg(kBaudDiv) = machine::kSysClockHz / SV_UART_BAUD;
  Reg(kCtrl) = 0x3u;
}

void UartPut(char c) {
  while ((Reg(kState) & 0x1u) != 0) {
  }
  Reg(kData) = static_cast<uint8_t>(c);
}

char UartGet() {
  while ((Reg(kState) & 0x2u) == 0) {
  }
  return static_cast<char>(Reg(kData) & 0xFFu);
}

constexpr size_t kStoreFlashBytes = sv::FlashMedium::FlashBytes(SV_FLASH_SECTOR_BYTES);
// The flash the stores live on: the linker script's .sv_store region.
__attribute__((section(".sv_store"), aligned(SV_FLASH_SECTOR_BYTES)))
uint8_t g_store_flash[SV_NUM_STORES * kStoreFlashBytes];

}  // namespace

namespace platform {

// Weak: a board with real flash returns its own driver for the region.
__attribute__((weak)) sv::FlashDriver* BoardFlash() {
  static sv::MemoryFlash flash(g_store_flash, sizeof(g_store_flash), SV_FLASH_SECTOR_BYTES);
  return &flash;
}

void InitConsole() { UartInit(); }

void Halt(int status) {
  // Straight to the UART: at exit() newlib's stdio is already closed.
  char line[32];
  const int n = std::snprintf(line, sizeof(line), "HALT status=%d\r\n", status);
  for (int i = 0; i < n && i < static_cast<int>(sizeof(line)); ++i) UartPut(line[i]);
  __asm volatile("dsb" ::: "memory");
  Reg(kAircr) = 0x05FA0004u;  // VECTKEY | SYSRESETREQ
  for (;;) __asm volatile("wfi");
}

sv::StorageMedium* StoreMedium(int index) {
  static sv::FlashMedium media[SV_NUM_STORES] = {
      sv::FlashMedium(BoardFlash(), 0),
#ifdef SV_TWO_MODELS
      sv::FlashMedium(BoardFlash(), kStoreFlashBytes),
#endif
  };
  return index >= 0 && index < SV_NUM_STORES ? &media[index] : nullptr;
}

}  // namespace platform

// newlib system calls (linked with --specs=nosys.specs, whose stubs these replace).
extern "C" {

int _write(int fd, const char* data, int size) {
  if (fd != 1 && fd != 2) {
    errno = EBADF;
    return -1;
  }
  for (int i = 0; i < size; ++i) {
    if (data[i] == '\n') UartPut('\r');  // terminals want CR LF
    UartPut(data[i]);
  }
  return size;
}

// One line at most per call (stdio's line discipline on a terminal).
int _read(int fd, char* data, int size) {
  if (fd != 0) {
    errno = EBADF;
    return -1;
  }
  int n = 0;
  while (n < size) {
    const char c = UartGet();
    if (c == '\r') continue;
    data[n++] = c;
    if (c == '\n') break;
  }
  return n;
}

int _open(const char*, int, ...) {
  errno = ENOENT;  // no files on the board: audio comes from "@buffer"
  return -1;
}
int _close(int) { return 0; }
int _fstat(int, struct stat* st) {
  st->st_mode = S_IFCHR;
  return 0;
}
int _isatty(int fd) { return fd <= 2 ? 1 : 0; }
int _lseek(int, int, int) { return 0; }
void _exit(int status) { platform::Halt(status); }

}  // extern "C"
