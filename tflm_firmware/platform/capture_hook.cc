// Where the platform finds the PCM capture that main set up (every platform).
#include "platform.h"

namespace platform {

namespace {
sv::AudioCapture* g_capture = nullptr;
}  // namespace

void SetCapture(sv::AudioCapture* capture) { g_capture = capture; }
sv::AudioCapture* capture() { return g_capture; }

}  // namespace platform
