#include "citycard/hil/nfc.h"

#include <nfc/nfc.h>

namespace citycard::hil {

const char* libnfc_version() { return nfc_version(); }

Result<std::unique_ptr<NfcContext>> NfcContext::create() {
  nfc_context* ctx = nullptr;
  nfc_init(&ctx);
  if (!ctx) return Result<std::unique_ptr<NfcContext>>(Errc::kUnavailable, "nfc_init failed");
  return std::unique_ptr<NfcContext>(new NfcContext(ctx));
}

NfcContext::~NfcContext() { nfc_exit(ctx_); }

std::vector<std::string> NfcContext::list_readers(std::size_t max_readers) {
  std::vector<nfc_connstring> found(max_readers);
  const std::size_t n = nfc_list_devices(ctx_, found.data(), found.size());
  std::vector<std::string> out;
  for (std::size_t i = 0; i < n; ++i) out.emplace_back(found[i]);
  return out;
}

Result<std::unique_ptr<NfcReader>> NfcContext::open(const std::string& connstring) {
  if (connstring.size() >= sizeof(nfc_connstring)) {
    return Result<std::unique_ptr<NfcReader>>(Errc::kInvalidArgument,
                                              "connstring too long: " + connstring);
  }
  nfc_device* dev = nfc_open(ctx_, connstring.c_str());
  if (!dev) {
    return Result<std::unique_ptr<NfcReader>>(
        Errc::kUnavailable, "no NFC reader answers at '" + connstring +
                                "' (is it plugged in, and is the connstring right? "
                                "e.g. pn532_uart:/dev/ttyUSB0)");
  }
  return std::unique_ptr<NfcReader>(new NfcReader(dev, connstring));
}

NfcReader::~NfcReader() { nfc_close(dev_); }

std::string NfcReader::name() const { return nfc_device_get_name(dev_); }

}  // namespace citycard::hil
