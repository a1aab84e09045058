// The libnfc side of hardware in the loop: a context, the readers it can see, and opening one
// by connstring with libnfc's errors turned into Status values.
//
// Not thread-safe: one NfcContext per thread (libnfc contexts are not shared).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "citycard/protocol/status.h"

struct nfc_context;
struct nfc_device;

namespace citycard::hil {

const char* libnfc_version();

class NfcReader;

class NfcContext {
 public:
  static Result<std::unique_ptr<NfcContext>> create();
  ~NfcContext();
  NfcContext(const NfcContext&) = delete;
  NfcContext& operator=(const NfcContext&) = delete;

  // Connstrings of the readers libnfc finds by scanning (and LIBNFC_DEVICE, if set).
  std::vector<std::string> list_readers(std::size_t max_readers = 16);
  // Opens a reader, e.g. "pn532_uart:/dev/ttyUSB0" or "pn532_uart:/dev/pts/5".
  Result<std::unique_ptr<NfcReader>> open(const std::string& connstring);

 private:
  explicit NfcContext(nfc_context* ctx) : ctx_(ctx) {}
  nfc_context* ctx_;
};

class NfcReader {
 public:
  ~NfcReader();
  NfcReader(const NfcReader&) = delete;
  NfcReader& operator=(const NfcReader&) = delete;
  std::string name() const;
  std::string connstring() const { return connstring_; }

 private:
  friend class NfcContext;
  NfcReader(nfc_device* dev, std::string connstring) : dev_(dev), connstring_(std::move(connstring)) {}
  nfc_device* dev_;
  std::string connstring_;
};

}  // namespace citycard::hil
