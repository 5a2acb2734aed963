// Example: a microphone feeding "@buffer" from its DMA interrupt.
//
// A PDM/I2S microphone driver typically runs a circular DMA over two halves of
// a block buffer and interrupts when each half is full.  Each callback hands
// its half to platform::capture(), which computes the fbank frames it
// completes (about 43 k instructions per 10 ms frame on a Cortex-M4: keep this
// interrupt below the UART's in priority) into the kept frames;
// `enroll NAME @buffer` / `verify NAME @buffer` then score what was recorded.  Hook these two functions to your HAL's half/full-transfer
// callbacks (e.g. HAL_SAI_RxHalfCpltCallback / HAL_SAI_RxCpltCallback), start
// the DMA on g_mic_dma, and call MicStartUtterance() when recording starts
// (button, voice-activity detector).  Samples must be 16 kHz mono int16; a
// 48 kHz or 32-bit PDM stream is decimated/converted before Push().
#include <cstddef>
#include <cstdint>

#include "capture.h"
#include "platform.h"

namespace {
constexpr size_t kHalfBlock = 256;  // 16 ms at 16 kHz per interrupt
}  // namespace

// The DMA target: two halves, refilled alternately by the peripheral.
alignas(4) int16_t g_mic_dma[2 * kHalfBlock];

extern "C" void MicStartUtterance() {
  if (sv::AudioCapture* capture = platform::capture()) capture->Restart();
}

extern "C" void MicDmaHalfComplete() {
  if (sv::AudioCapture* capture = platform::capture()) capture->Push(g_mic_dma, kHalfBlock);
}

extern "C" void MicDmaComplete() {
  if (sv::AudioCapture* capture = platform::capture()) capture->Push(g_mic_dma + kHalfBlock, kHalfBlock);
}
