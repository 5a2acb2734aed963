// Fault injection for the enrollment store: the rule of store.h checked by
// sweeping damage over every byte of each slot, every combination of slot
// states, and a save cut short at every byte it writes.
//
// The oracle everywhere: no acknowledged table is lost without an error (Load
// gives the acknowledged table, or the one being saved when its save reported
// kOk or never replied, or a non-kOk status), and a store whose Load failed
// writes nothing until Format.
//
// On the host every offset of both slots is swept.  Under QEMU (about 25x
// slower per case) offsets are sampled: the damage sweep takes every byte of
// the table and every 61st byte of the unused rest of the slot, the
// stray-byte sweep every 61st byte; the slot-state matrix and the cut-save and
// read-failure sweeps are complete on both.
#include <cmath>
#include <cstdio>
#include <cstring>

#include "fault_medium.h"
#include "harness.h"
#include "store.h"

namespace {

using storetest::FaultMedium;
using storetest::Table;

constexpr int kDim = 8;
constexpr uint32_t kModelId = 0x5EEDF00Du;
constexpr size_t kSlot = sv::kStoreSlotBytes;
constexpr size_t kMediumBytes = sv::kStoreMediumBytes;

#if defined(__arm__)
constexpr size_t kTailStride = 61;  // unused bytes after the table, sampled on QEMU
#else
constexpr size_t kTailStride = 1;
#endif

uint8_t g_bytes[kMediumBytes];      // the medium under test
uint8_t g_reference[kMediumBytes];  // a committed 3-speaker store (both slots)
uint8_t g_base[kMediumBytes];       // the state a sweep restores to
FaultMedium g_medium(g_bytes, kMediumBytes);
sv::EnrollmentStore g_store(&g_medium, kModelId, kDim);   // the device
sv::EnrollmentStore g_reboot(&g_medium, kModelId, kDim);  // the device after a restart
Table g_t3;

int g_failures = 0;  // sweep failures, reported by the first few

void Failure(const char* what, int a, int b, int c, int d) {
  if (++g_failures <= 8) std::printf("  sweep failure: %s (%d %d %d %d)\n", what, a, b, c, d);
}

void Embedding(int seed, float* out) {
  for (int d = 0; d < kDim; ++d) out[d] = std::sin(0.7f * static_cast<float>(seed * kDim + d + 1));
}

// g_reference: alice (2 utterances), bob, carol, saved with no fault.
void BuildReference() {
  static bool built = false;
  if (built) return;
  built = true;
  std::memset(g_bytes, 0xFF, kMediumBytes);
  g_medium.Heal();
  float e[kDim];
  g_store.Load();
  Embedding(1, e);
  g_store.Enroll("alice", e);
  Embedding(2, e);
  g_store.Enroll("bob", e);
  Embedding(3, e);
  g_store.Enroll("carol", e);
  Embedding(4, e);
  g_store.Enroll("alice", e);
  storetest::Capture(g_store, &g_t3);
  std::memcpy(g_reference, g_bytes, kMediumBytes);
}

// Fault f of a byte: 0..7 flip that bit, 8 zero it, 9 erase it to 0xFF.
constexpr int kFaults = 10;
uint8_t Fault(uint8_t v, int f) {
  if (f < 8) return static_cast<uint8_t>(v ^ (1u << f));
  return f == 8 ? 0x00 : 0xFF;
}

// After a Load that failed: the store must refuse every call but Format, and
// write nothing.
bool LockedAndSilent(sv::EnrollmentStore* store, sv::Status expected) {
  const size_t writes = g_medium.writes;
  float e[kDim];
  Embedding(9, e);
  const float* mean = nullptr;
  uint32_t n = 0;
  bool ok = store->state() == expected;
  ok = ok && store->Enroll("alice", e) == expected && store->Enroll("dave", e) == expected;
  ok = ok && store->Delete("bob") == expected && store->Find("bob", &mean, &n) == expected;
  return ok && g_medium.writes == writes;
}

enum class Other { kOk, kDamaged, kErased, kZeroed };

}  // namespace

// Every byte of each slot, 10 faults each (8 bit flips, zeroing, erasing to
// 0xFF), with the other slot intact, damaged the same way, erased or zeroed.
TEST(store_sweep_single_byte_damage_of_each_slot) {
  BuildReference();
  const size_t table = storetest::TableBytes(3, kDim);
  long cases = 0;
  long loaded = 0;
  long refused = 0;
  int formats = 0;
  const size_t writes = g_medium.writes;
  for (int x = 0; x < 2; ++x) {
    for (int o = 0; o < 4; ++o) {
      const Other other = static_cast<Other>(o);
      std::memcpy(g_base, g_reference, kMediumBytes);
      uint8_t* ys = g_base + (1 - x) * kSlot;
      if (other == Other::kErased) std::memset(ys, 0xFF, kSlot);
      if (other == Other::kZeroed) std::memset(ys, 0x00, kSlot);
      std::memcpy(g_bytes, g_base, kMediumBytes);
      uint8_t* xb = g_bytes + x * kSlot;
      uint8_t* yb = g_bytes + (1 - x) * kSlot;
      bool formatted = false;
      for (size_t i = 0; i < kSlot; i += (i < table ? 1 : kTailStride)) {
        for (int f = 0; f < kFaults; ++f) {
          const uint8_t v = Fault(xb[i], f);
          if (v == xb[i]) continue;
          ++cases;
          const uint8_t xo = xb[i];
          const uint8_t yo = yb[i];
          xb[i] = v;
          if (other == Other::kDamaged) yb[i] = Fault(yo, f);
          // A byte after the CRC is never read: the slot stays valid.
          const bool expect_ok = other == Other::kOk || i >= table;
          const sv::Status status = g_store.Load();
          if (expect_ok) {
            ++loaded;
            if (!storetest::Holds(g_store, g_t3)) Failure("table lost", x, o, static_cast<int>(i), f);
          } else {
            ++refused;
            if (status != sv::Status::kStoreCorrupt || g_store.Load() != status) {
              Failure("not STORE_CORRUPT", x, o, static_cast<int>(i), static_cast<int>(status));
            } else if (!LockedAndSilent(&g_store, sv::Status::kStoreCorrupt)) {
              Failure("wrote while corrupt", x, o, static_cast<int>(i), f);
            }
            if (!formatted) {  // the way out, once per combination
              formatted = true;
              ++formats;
              if (g_store.Format() != sv::Status::kOk || g_reboot.Load() != sv::Status::kOk ||
                  g_reboot.count() != 0) {
                Failure("format", x, o, static_cast<int>(i), f);
              }
              std::memcpy(g_bytes, g_base, kMediumBytes);
              xb[i] = v;
            }
          }
          xb[i] = xo;
          yb[i] = yo;
        }
      }
    }
  }
  std::printf("  single-byte damage: %ld cases, %ld loaded intact, %ld STORE_CORRUPT\n", cases,
              loaded, refused);
  CHECK_EQ(g_failures, 0);
  CHECK_EQ(g_medium.writes, writes + 2 * formats);  // Load never writes; Format writes two copies
  CHECK(cases > 0 && loaded > 0 && refused > 0);
  g_failures = 0;
}

// An erased or zeroed slot with one stray byte anywhere is damaged, not
// blank: with a valid twin the table loads, with a blank twin it is corrupt.
TEST(store_sweep_stray_byte_in_a_blank_slot) {
  BuildReference();
  long cases = 0;
  const size_t writes = g_medium.writes;
  for (int x = 0; x < 2; ++x) {
    for (int fill = 0; fill < 2; ++fill) {
      const uint8_t blank = fill == 0 ? 0xFF : 0x00;
      for (int twin_ok = 0; twin_ok < 2; ++twin_ok) {
        std::memcpy(g_bytes, g_reference, kMediumBytes);
        uint8_t* xb = g_bytes + x * kSlot;
        std::memset(xb, blank, kSlot);
        if (!twin_ok) std::memset(g_bytes + (1 - x) * kSlot, blank, kSlot);
        for (size_t i = 0; i < kSlot; i += kTailStride) {
          const uint8_t strays[2] = {static_cast<uint8_t>(blank ^ (1u << (i % 8))),
                                     static_cast<uint8_t>(~blank)};
          for (uint8_t v : strays) {
            ++cases;
            xb[i] = v;
            const sv::Status status = g_store.Load();
            if (twin_ok) {
              if (!storetest::Holds(g_store, g_t3)) Failure("twin not used", x, fill, static_cast<int>(i), v);
            } else if (status != sv::Status::kStoreCorrupt ||
                       !LockedAndSilent(&g_store, sv::Status::kStoreCorrupt)) {
              Failure("stray byte read as blank", x, fill, static_cast<int>(i), v);
            }
            xb[i] = blank;
          }
        }
      }
    }
  }
  std::printf("  stray byte in a blank slot: %ld cases\n", cases);
  CHECK_EQ(g_failures, 0);
  CHECK_EQ(g_medium.writes, writes);
  g_failures = 0;
}

// Slot A x slot B, each ok / damaged / erased / zeroed / header erased /
// header zeroed: the expected status, and what happens next (an enroll on a
// usable store keeps everything; a failed store writes nothing until format).
TEST(store_slot_state_combinations) {
  BuildReference();
  enum { kOk, kDamaged, kErased, kZeroed, kHeaderErased, kHeaderZeroed, kStates };
  const char* names[kStates] = {"ok", "damaged", "erased", "zeroed", "header-erased",
                                "header-zeroed"};
  float e[kDim];
  Embedding(5, e);
  int combos = 0;
  for (int a = 0; a < kStates; ++a) {
    for (int b = 0; b < kStates; ++b) {
      ++combos;
      std::memcpy(g_bytes, g_reference, kMediumBytes);
      const int states[2] = {a, b};
      for (int s = 0; s < 2; ++s) {
        uint8_t* p = g_bytes + s * kSlot;
        if (states[s] == kDamaged) p[57 + 13 * s] ^= 0x21;
        if (states[s] == kErased) std::memset(p, 0xFF, kSlot);
        if (states[s] == kZeroed) std::memset(p, 0x00, kSlot);
        if (states[s] == kHeaderErased) std::memset(p, 0xFF, 20);
        if (states[s] == kHeaderZeroed) std::memset(p, 0x00, 20);
      }
      const bool blank_a = a == kErased || a == kZeroed;
      const bool blank_b = b == kErased || b == kZeroed;
      const bool fresh = blank_a && blank_b;
      const bool usable = a == kOk || b == kOk;
      const sv::Status status = g_store.Load();
      bool good = true;
      if (usable) {
        good = storetest::Holds(g_store, g_t3);
        // The next save rewrites both slots: afterwards either alone suffices.
        good = good && g_store.Enroll("dave", e) == sv::Status::kOk;
        for (int s = 0; s < 2 && good; ++s) {
          std::memset(g_bytes + s * kSlot + 3, 0x00, 1);  // break slot s
          good = g_reboot.Load() == sv::Status::kOk && g_reboot.count() == 4;
          g_bytes[s * kSlot + 3] = 'T';  // 'SVST' magic, restored
        }
      } else if (fresh) {
        good = status == sv::Status::kOk && g_store.count() == 0;
      } else {
        good = status == sv::Status::kStoreCorrupt &&
               LockedAndSilent(&g_store, sv::Status::kStoreCorrupt) &&
               g_store.Format() == sv::Status::kOk && g_reboot.Load() == sv::Status::kOk &&
               g_reboot.count() == 0;
      }
      if (!good) {
        std::printf("  A %s x B %s: %s\n", names[a], names[b], sv::StatusName(status));
        CHECK(good);
      }
    }
  }
  CHECK_EQ(combos, kStates * kStates);
}

namespace {

// The saves under test, each from a state set up by earlier (fault-free) saves.
enum class Op {
  kFirstEnrollErased,   // fresh erased medium, first enroll
  kFirstEnrollZeroed,   // fresh zeroed medium, first enroll
  kEnrollNew,           // a second speaker
  kEnrollExisting,      // another utterance of alice
  kDelete,              // delete bob of three
  kFormatFull,          // reset a usable store of two
  kFormatCorrupt,       // reset a corrupt store (damaged + blank)
  kEnrollUnmirrored,    // the slots hold different sequences (a second copy was cut at 0)
  kEnrollTwinDamaged,   // slot A damaged, the table only in slot B
  kCount
};
const char* const kOpNames[] = {"first-enroll-erased", "first-enroll-zeroed", "enroll-new",
                                "enroll-existing",      "delete",              "format-full",
                                "format-corrupt",       "enroll-unmirrored",   "enroll-twin-damaged"};

void SetUp(Op op) {
  float e[kDim];
  std::memset(g_bytes, op == Op::kFirstEnrollZeroed ? 0x00 : 0xFF, kMediumBytes);
  g_medium.Heal();
  g_store.Load();
  if (op == Op::kFirstEnrollErased || op == Op::kFirstEnrollZeroed) return;
  Embedding(1, e);
  g_store.Enroll("alice", e);
  if (op == Op::kEnrollNew) return;
  if (op == Op::kFormatCorrupt) {
    g_bytes[40] ^= 0x01;
    std::memset(g_bytes + kSlot, 0xFF, kSlot);
    return;
  }
  Embedding(2, e);
  if (op == Op::kEnrollUnmirrored) g_medium.write_budget = storetest::TableBytes(2, kDim);
  g_store.Enroll("bob", e);
  g_medium.Heal();
  if (op == Op::kEnrollTwinDamaged) g_bytes[70] ^= 0x40;
  if (op == Op::kDelete) {
    Embedding(3, e);
    g_store.Enroll("carol", e);
  }
}

sv::Status Run(Op op, sv::EnrollmentStore* store) {
  float e[kDim];
  switch (op) {
    case Op::kFirstEnrollErased:
    case Op::kFirstEnrollZeroed:
      Embedding(1, e);
      return store->Enroll("alice", e);
    case Op::kEnrollNew:
      Embedding(2, e);
      return store->Enroll("bob", e);
    case Op::kEnrollExisting:
      Embedding(6, e);
      return store->Enroll("alice", e);
    case Op::kDelete:
      return store->Delete("bob");
    case Op::kFormatFull:
    case Op::kFormatCorrupt:
      return store->Format();
    case Op::kEnrollUnmirrored:
    case Op::kEnrollTwinDamaged:
      Embedding(3, e);
      return store->Enroll("carol", e);
    case Op::kCount:
      break;
  }
  return sv::Status::kBadArgument;
}

// True if both stores are in the same state holding the same table.
bool Same(const sv::EnrollmentStore& a, const sv::EnrollmentStore& b) {
  if (a.state() != b.state()) return false;
  if (a.state() != sv::Status::kOk) return true;
  Table t;
  storetest::Capture(a, &t);
  return storetest::Holds(b, t);
}

}  // namespace

// Each save cut short after k of the bytes it writes, for every k: with the
// write failing (the device stays up), with power lost at the cut (a restart
// follows), and with a medium that silently drops the rest but reports kOk.
TEST(store_sweep_save_cut_short_at_every_byte) {
  long cases = 0;
  long said_ok = 0;
  long said_io_error = 0;
  long locked = 0;
  long reboot_old = 0;
  long reboot_new = 0;
  long reboot_corrupt = 0;
  for (int o = 0; o < static_cast<int>(Op::kCount); ++o) {
    const Op op = static_cast<Op>(o);
    SetUp(op);
    std::memcpy(g_base, g_bytes, kMediumBytes);
    const sv::Status before_status = g_store.Load();
    Table before;
    storetest::Capture(g_store, &before);
    // Nothing to lose: a store that was empty or already unusable.
    const bool nothing_to_lose = before_status != sv::Status::kOk || before.count == 0;
    g_medium.bytes_written = 0;
    if (Run(op, &g_store) != sv::Status::kOk) Failure("fault-free save", o, 0, 0, 0);
    Table after;
    storetest::Capture(g_store, &after);
    const size_t total = g_medium.bytes_written;
    if (total != 2 * storetest::TableBytes(after.count, kDim)) Failure("two copies", o, 0, 0, 0);
    for (int mode = 0; mode < 3; ++mode) {  // 0: write error, 1: power loss, 2: lying medium
      for (size_t k = 0; k < total; ++k) {
        ++cases;
        std::memcpy(g_bytes, g_base, kMediumBytes);
        g_medium.Heal();
        g_store.Load();
        g_medium.write_budget = k;
        g_medium.power_loss = mode == 1;
        g_medium.lie = mode == 2;
        const sv::Status status = Run(op, &g_store);
        g_medium.Heal();
        const sv::Status rebooted = g_reboot.Load();
        const bool is_old = rebooted == sv::Status::kOk && before_status == sv::Status::kOk &&
                            storetest::Holds(g_reboot, before);
        const bool is_new = rebooted == sv::Status::kOk && storetest::Holds(g_reboot, after);
        const bool corrupt = rebooted == sv::Status::kStoreCorrupt;
        reboot_old += is_old && !is_new;
        reboot_new += is_new;
        reboot_corrupt += corrupt;
        const int ki = static_cast<int>(k);
        // Whatever the mode: a restart finds the old table, the new one, or --
        // only where nothing could be lost -- a locked store.
        if (!is_old && !is_new && !(corrupt && nothing_to_lose)) Failure("lost", o, mode, ki, 0);
        if (mode == 1) continue;  // a dead device sends no status
        // The device's view is what a restart sees.
        if (!Same(g_store, g_reboot)) Failure("RAM view differs from a restart", o, mode, ki, 0);
        if (status == sv::Status::kOk) {
          ++said_ok;
          if (!is_new) Failure("OK but not persisted", o, mode, ki, 0);
        } else if (status == sv::Status::kIoError) {
          ++said_io_error;
          if (is_new && !is_old) Failure("IO_ERROR but persisted", o, mode, ki, 0);
          if (g_store.state() == sv::Status::kOk) {
            // Nothing persisted, so a retry counts once.
            if (Run(op, &g_store) != sv::Status::kOk || g_reboot.Load() != sv::Status::kOk ||
                !storetest::Holds(g_reboot, after)) {
              Failure("retry", o, mode, ki, 0);
            }
          } else {
            ++locked;
            if (!LockedAndSilent(&g_store, g_store.state())) Failure("wrote while locked", o, mode, ki, 0);
            if (g_store.Format() != sv::Status::kOk) Failure("format after lock", o, mode, ki, 0);
          }
        } else {
          Failure("status", o, mode, ki, static_cast<int>(status));
        }
      }
    }
    if (g_failures != 0) std::printf("  ... in %s\n", kOpNames[o]);
  }
  std::printf("  cut saves: %ld cases (%d saves x 3 modes x every byte); device said OK %ld, "
              "IO_ERROR %ld (locked %ld); restart found old %ld, new %ld, STORE_CORRUPT %ld\n",
              cases, static_cast<int>(Op::kCount), said_ok, said_io_error, locked, reboot_old,
              reboot_new, reboot_corrupt);
  CHECK_EQ(g_failures, 0);
  g_failures = 0;
}

// What one save under a read fault did, and what a restart with a healthy medium loads.
struct ReadCase {
  int op;
  int n;                // the save's n-th read is the first to fail
  sv::Status status;    // the save's status
  sv::Status state;     // the store's state after it
  bool silent;          // a locked store wrote nothing
  bool is_old, is_new;  // a restart loads the table before / after the save
};

// Every save of Op, once for each of its reads (and a few past them): restore the
// medium, let `arm(n)` make read n of the save fail (once or from then on), save,
// heal, restart, and hand the outcome to `check`.  Returns the number of cases.
template <typename Arm, typename Check>
long SweepReadFaults(Arm arm, Check check) {
  long cases = 0;
  for (int o = 0; o < static_cast<int>(Op::kCount); ++o) {
    const Op op = static_cast<Op>(o);
    SetUp(op);
    std::memcpy(g_base, g_bytes, kMediumBytes);
    const sv::Status before_status = g_store.Load();
    Table before;
    storetest::Capture(g_store, &before);
    const size_t reads_before = g_medium.reads;
    Run(op, &g_store);
    Table after;
    storetest::Capture(g_store, &after);
    const size_t reads = g_medium.reads - reads_before;
    for (size_t n = 0; n < reads + 3; ++n) {
      ++cases;
      std::memcpy(g_bytes, g_base, kMediumBytes);
      g_medium.Heal();
      g_store.Load();
      arm(g_medium.reads + n);
      ReadCase c{o, static_cast<int>(n), Run(op, &g_store), g_store.state(), true, false, false};
      c.silent = c.state == sv::Status::kOk || LockedAndSilent(&g_store, c.state);
      g_medium.Heal();
      const sv::Status rebooted = g_reboot.Load();
      c.is_new = rebooted == sv::Status::kOk && storetest::Holds(g_reboot, after);
      c.is_old = rebooted == sv::Status::kOk && before_status == sv::Status::kOk &&
                 storetest::Holds(g_reboot, before);
      check(c);
    }
  }
  return cases;
}

// A read that fails once, at each read a save makes (its read-backs and the
// reload after a failure): the status still says what is persisted.
TEST(store_sweep_transient_read_failure_during_a_save) {
  const long cases = SweepReadFaults([](size_t read) { g_medium.fail_read_number = read; },
                                     [](const ReadCase& c) {
    if (c.status == sv::Status::kOk && !c.is_new) Failure("read: OK but not persisted", c.op, c.n, 0, 0);
    if (c.status == sv::Status::kIoError && c.state == sv::Status::kOk && !c.is_old) {
      Failure("read: IO_ERROR but changed", c.op, c.n, 0, 0);
    }
    if (c.status == sv::Status::kIoError && c.is_new && !c.is_old) {  // locked or not: not persisted
      Failure("read: IO_ERROR but persisted", c.op, c.n, 0, 0);
    }
    if (c.status != sv::Status::kOk && c.status != sv::Status::kIoError) {
      Failure("read: status", c.op, c.n, static_cast<int>(c.status), 0);
    }
    if (!c.silent) Failure("read: wrote while locked", c.op, c.n, 0, 0);
  });
  std::printf("  transient read failures: %ld cases\n", cases);
  CHECK_EQ(g_failures, 0);
  g_failures = 0;
}

// Reads that fail from the n-th read of a save on, for good (after the write
// reached the medium: its read-back, the reload): the status must still match
// what a restart with readable flash loads -- OK only if the new table loads,
// IO_ERROR only if it does not, SAVE_UNVERIFIED when the store could not see
// which (then either may load, nothing older) -- and a locked store writes nothing.
TEST(store_sweep_reads_failing_for_good_during_a_save) {
  static long said[3];  // OK, IO_ERROR, SAVE_UNVERIFIED
  static long unverified_new;
  const long cases = SweepReadFaults([](size_t read) { g_medium.fail_reads_from = read; },
                                     [](const ReadCase& c) {
    if (!c.silent) Failure("reads dead: wrote while locked", c.op, c.n, 0, 0);
    if (!c.is_old && !c.is_new) Failure("reads dead: lost", c.op, c.n, 0, 0);
    if (c.status == sv::Status::kOk) {
      ++said[0];
      if (!c.is_new) Failure("reads dead: OK but not persisted", c.op, c.n, 0, 0);
    } else if (c.status == sv::Status::kIoError) {
      ++said[1];
      if (c.is_new && !c.is_old) Failure("reads dead: IO_ERROR but persisted", c.op, c.n, 0, 0);
    } else if (c.status == sv::Status::kSaveUnverified) {
      ++said[2];
      unverified_new += c.is_new;
      if (c.state != sv::Status::kIoError) Failure("reads dead: unverified, not locked", c.op, c.n, 0, 0);
    } else {
      Failure("reads dead: status", c.op, c.n, static_cast<int>(c.status), 0);
    }
  });
  std::printf("  reads failing for good: %ld cases; OK %ld, IO_ERROR %ld, SAVE_UNVERIFIED %ld "
              "(of which a restart loaded the new table %ld)\n", cases, said[0], said[1], said[2],
              unverified_new);
  CHECK(said[2] > 0);  // the read-back itself failing is among the cases
  CHECK_EQ(g_failures, 0);
  g_failures = 0;
}

// A Load whose read fails is IO_ERROR and writes nothing; readable again, it loads.
TEST(store_load_with_a_failing_read) {
  SetUp(Op::kDelete);
  g_medium.fail_read_number = g_medium.reads;
  CHECK_STATUS(g_store.Load(), sv::Status::kIoError);
  g_medium.fail_read_number = storetest::kUnlimited;
  CHECK(LockedAndSilent(&g_store, sv::Status::kIoError));
  CHECK_STATUS(g_store.Load(), sv::Status::kOk);  // readable again: a restart recovers
  CHECK_EQ(g_store.count(), 3);
}
