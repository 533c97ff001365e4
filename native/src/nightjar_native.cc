// Nightjar's native addon: what only macOS can answer about the machine and this process.
//
// Every function has the same name and arguments on every platform. Arguments are validated first
// (a bad argument throws a TypeError or RangeError, never crashes), then:
//   - on macOS (everything inside `#ifdef __APPLE__` below) the call asks the kernel or a framework;
//   - elsewhere it answers { supported: false, reason }.
// An answer is { supported: false, reason } | { supported: true, ok: false, status, error } |
// { supported: true, ok: true, ...fields }. Every call is a few system calls; none blocks for long.
// src/main/agent/native/native.ts validates these answers again before the agent trusts them, and
// test/main/native/native-source.test.ts pins the system calls the macOS section makes.

#include <napi.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#ifdef __APPLE__
#include <CoreFoundation/CoreFoundation.h>
#include <IOKit/IOKitLib.h>
#include <Security/Security.h>
#include <objc/message.h>
#include <objc/runtime.h>
// sys/types.h first: sys/ptrace.h and sys/sysctl.h use its pid_t and caddr_t.
#include <sys/types.h>
#include <sys/ptrace.h>
#include <sys/sysctl.h>
#include <unistd.h>

#include <cerrno>

// The active System Integrity Protection configuration, from the kernel (libsystem_kernel; not in
// a public header). Returns 0 on success; each set bit is a protection that is turned OFF.
extern "C" int csr_get_active_config(uint32_t* config);
#endif

namespace {

constexpr uint32_t kAddonVersion = 1;
// Limits on what JavaScript may hand in; native.ts enforces the same ones first.
constexpr size_t kMaxTagBytes = 128;
constexpr size_t kMaxMessageBytes = 1024 * 1024;

const char* BuildPlatform() {
#if defined(__APPLE__)
  return "darwin";
#elif defined(__linux__)
  return "linux";
#elif defined(_WIN32)
  return "win32";
#else
  return "other";
#endif
}

// ---- answers ---------------------------------------------------------------------------------

#ifdef __APPLE__
Napi::Object Ok(Napi::Env env) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("supported", true);
  o.Set("ok", true);
  return o;
}

Napi::Object Failed(Napi::Env env, int64_t status, const std::string& error) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("supported", true);
  o.Set("ok", false);
  o.Set("status", Napi::Number::New(env, static_cast<double>(status)));
  o.Set("error", error);
  return o;
}
#else
Napi::Object Unsupported(Napi::Env env) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("supported", false);
  o.Set("reason", std::string("macOS only: this build of the addon is for ") + BuildPlatform());
  return o;
}
#endif

// ---- argument checks (each throws a JavaScript error and returns false) -------------------

bool CheckArgCount(const Napi::CallbackInfo& info, size_t count) {
  if (info.Length() != count) {
    Napi::TypeError::New(info.Env(), "expected " + std::to_string(count) + " argument(s), got " + std::to_string(info.Length()))
        .ThrowAsJavaScriptException();
    return false;
  }
  return true;
}

// An application tag: 1 to 128 bytes of printable ASCII without spaces.
bool ReadTag(const Napi::CallbackInfo& info, size_t index, std::string* out) {
  if (!info[index].IsString()) {
    Napi::TypeError::New(info.Env(), "tag must be a string").ThrowAsJavaScriptException();
    return false;
  }
  std::string tag = info[index].As<Napi::String>().Utf8Value();
  if (tag.empty() || tag.size() > kMaxTagBytes) {
    Napi::RangeError::New(info.Env(), "tag must be 1 to 128 bytes").ThrowAsJavaScriptException();
    return false;
  }
  for (unsigned char c : tag) {
    if (c < 0x21 || c > 0x7e) {
      Napi::RangeError::New(info.Env(), "tag must be printable ASCII without spaces").ThrowAsJavaScriptException();
      return false;
    }
  }
  *out = tag;
  return true;
}

// A message to sign: a Uint8Array (a Buffer is one) of at most 1 MiB.
bool ReadMessage(const Napi::CallbackInfo& info, size_t index, std::vector<uint8_t>* out) {
  if (!info[index].IsTypedArray() || info[index].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    Napi::TypeError::New(info.Env(), "message must be a Uint8Array").ThrowAsJavaScriptException();
    return false;
  }
  Napi::Uint8Array bytes = info[index].As<Napi::Uint8Array>();
  if (bytes.ByteLength() > kMaxMessageBytes) {
    Napi::RangeError::New(info.Env(), "message must be at most 1 MiB").ThrowAsJavaScriptException();
    return false;
  }
  out->assign(bytes.Data(), bytes.Data() + bytes.ByteLength());
  return true;
}

#ifdef __APPLE__
// ---- macOS -----------------------------------------------------------------------------------

// Owns one Core Foundation reference and releases it.
template <typename T>
class CFOwned {
 public:
  explicit CFOwned(T ref = nullptr) : ref_(ref) {}
  ~CFOwned() {
    if (ref_ != nullptr) CFRelease(ref_);
  }
  CFOwned(const CFOwned&) = delete;
  CFOwned& operator=(const CFOwned&) = delete;
  T get() const { return ref_; }
  T* out() { return &ref_; }
  explicit operator bool() const { return ref_ != nullptr; }

 private:
  T ref_;
};

std::string FromCFString(CFStringRef s) {
  if (s == nullptr) return std::string();
  CFIndex max = CFStringGetMaximumSizeForEncoding(CFStringGetLength(s), kCFStringEncodingUTF8) + 1;
  std::vector<char> buf(static_cast<size_t>(max), '\0');
  if (!CFStringGetCString(s, buf.data(), max, kCFStringEncodingUTF8)) return std::string();
  return std::string(buf.data());
}

std::string Hex(CFDataRef data) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  const UInt8* p = CFDataGetBytePtr(data);
  for (CFIndex i = 0; i < CFDataGetLength(data); i++) {
    out.push_back(digits[p[i] >> 4]);
    out.push_back(digits[p[i] & 0xf]);
  }
  return out;
}

// A failure answer from a CFError (taking ownership of it).
Napi::Object FailedFromCFError(Napi::Env env, CFErrorRef err, const char* what) {
  if (err == nullptr) return Failed(env, -1, std::string(what) + " failed");
  CFOwned<CFErrorRef> owned(err);
  CFOwned<CFStringRef> description(CFErrorCopyDescription(err));
  return Failed(env, static_cast<int64_t>(CFErrorGetCode(err)), std::string(what) + ": " + FromCFString(description.get()));
}

Napi::Object FailedStatus(Napi::Env env, OSStatus status, const char* what) {
  CFOwned<CFStringRef> message(SecCopyErrorMessageString(status, nullptr));
  return Failed(env, status, std::string(what) + ": " + (message ? FromCFString(message.get()) : std::to_string(status)));
}

CFDictionaryRef MakeDictionary(const void** keys, const void** values, CFIndex count) {
  return CFDictionaryCreate(kCFAllocatorDefault, keys, values, count, &kCFTypeDictionaryKeyCallBacks, &kCFTypeDictionaryValueCallBacks);
}

bool SysctlString(const char* name, std::string* out) {
  size_t size = 0;
  if (sysctlbyname(name, nullptr, &size, nullptr, 0) != 0 || size == 0 || size > 4096) return false;
  std::vector<char> buf(size + 1, '\0');
  if (sysctlbyname(name, buf.data(), &size, nullptr, 0) != 0) return false;
  *out = std::string(buf.data(), strnlen(buf.data(), size));
  return true;
}

bool SysctlInt(const char* name, int32_t* out) {
  int32_t value = 0;
  size_t size = sizeof value;
  if (sysctlbyname(name, &value, &size, nullptr, 0) != 0 || size != sizeof value) return false;
  *out = value;
  return true;
}

// Whether a debugger (or any tracer) is attached now: PT_DENY_ATTACH would then end the process.
bool BeingTraced() {
  int mib[4] = {CTL_KERN, KERN_PROC, KERN_PROC_PID, getpid()};
  struct kinfo_proc proc;
  std::memset(&proc, 0, sizeof proc);
  size_t size = sizeof proc;
  if (sysctl(mib, 4, &proc, &size, nullptr, 0) != 0) return false;
  return (proc.kp_proc.p_flag & P_TRACED) != 0;
}

// The bits of csr_get_active_config that turn a protection off. CSR_ALLOW_APPLE_INTERNAL (0x10)
// is the only one left out: it marks Apple-internal hardware and disables nothing by itself.
constexpr uint32_t kCsrProtectionOffBits = 0x1 | 0x2 | 0x4 | 0x8 | 0x20 | 0x40 | 0x80 | 0x100 | 0x200 | 0x400 | 0x800;

CFDataRef TagData(const std::string& tag) {
  return CFDataCreate(kCFAllocatorDefault, reinterpret_cast<const UInt8*>(tag.data()), static_cast<CFIndex>(tag.size()));
}

// Finds this app's Secure Enclave private key with this tag. errSecItemNotFound if there is none.
OSStatus LoadEnclaveKey(const std::string& tag, SecKeyRef* out) {
  CFOwned<CFDataRef> tagData(TagData(tag));
  const void* keys[] = {kSecClass,   kSecAttrApplicationTag, kSecAttrKeyType, kSecAttrKeyClass, kSecAttrTokenID,
                        kSecReturnRef, kSecUseDataProtectionKeychain};
  const void* values[] = {kSecClassKey,   tagData.get(),  kSecAttrKeyTypeECSECPrimeRandom, kSecAttrKeyClassPrivate,
                          kSecAttrTokenIDSecureEnclave, kCFBooleanTrue, kCFBooleanTrue};
  CFOwned<CFDictionaryRef> query(MakeDictionary(keys, values, 7));
  CFTypeRef result = nullptr;
  OSStatus status = SecItemCopyMatching(query.get(), &result);
  if (status != errSecSuccess) return status;
  if (result == nullptr || CFGetTypeID(result) != SecKeyGetTypeID()) {
    if (result != nullptr) CFRelease(result);
    return errSecInternalComponent;
  }
  *out = static_cast<SecKeyRef>(const_cast<void*>(result));
  return errSecSuccess;
}

// The 65-byte uncompressed point (0x04 ‖ X ‖ Y) of a private key's public half.
Napi::Value PublicKeyOf(Napi::Env env, SecKeyRef privateKey, CFErrorRef* error) {
  CFOwned<SecKeyRef> publicKey(SecKeyCopyPublicKey(privateKey));
  if (!publicKey) return env.Null();
  CFOwned<CFDataRef> raw(SecKeyCopyExternalRepresentation(publicKey.get(), error));
  if (!raw || CFDataGetLength(raw.get()) != 65 || CFDataGetBytePtr(raw.get())[0] != 0x04) return env.Null();
  return Napi::Buffer<uint8_t>::Copy(env, CFDataGetBytePtr(raw.get()), 65);
}
#endif

// ---- the calls -------------------------------------------------------------------------------

// addonInfo(): what was built. Harmless; the child-process test-load calls it.
Napi::Value AddonInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!CheckArgCount(info, 0)) return env.Undefined();
  Napi::Object o = Napi::Object::New(env);
  o.Set("version", kAddonVersion);
  o.Set("platform", BuildPlatform());
#ifdef __APPLE__
  o.Set("macos", true);
#else
  o.Set("macos", false);
#endif
  return o;
}

// denyDebuggerAttach(): ptrace(PT_DENY_ATTACH): no debugger may attach to this process from now on.
// If one is attached already, PT_DENY_ATTACH would end the process, so the call refuses instead.
Napi::Value DenyDebuggerAttach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!CheckArgCount(info, 0)) return env.Undefined();
#ifdef __APPLE__
  if (BeingTraced()) return Failed(env, EBUSY, "a debugger is attached to this process already; PT_DENY_ATTACH would end it");
  errno = 0;
  if (ptrace(PT_DENY_ATTACH, 0, 0, 0) != 0) return Failed(env, errno, std::string("ptrace(PT_DENY_ATTACH): ") + std::strerror(errno));
  Napi::Object o = Ok(env);
  o.Set("denied", true);
  return o;
#else
  return Unsupported(env);
#endif
}

// sipStatus(): System Integrity Protection from the kernel (csr_get_active_config), never csrutil.
Napi::Value SipStatus(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!CheckArgCount(info, 0)) return env.Undefined();
#ifdef __APPLE__
  uint32_t mask = 0;
  int rc = csr_get_active_config(&mask);
  if (rc != 0) return Failed(env, rc, "csr_get_active_config failed");
  Napi::Object o = Ok(env);
  o.Set("enabled", (mask & kCsrProtectionOffBits) == 0);
  o.Set("mask", Napi::Number::New(env, mask));
  return o;
#else
  return Unsupported(env);
#endif
}

// codeSigning(): this process's signature: SecCodeCopySelf, SecCodeCheckValidity, and
// SecCodeCopySigningInformation's team id, flags (hardened runtime) and code directory hash.
Napi::Value CodeSigning(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!CheckArgCount(info, 0)) return env.Undefined();
#ifdef __APPLE__
  CFOwned<SecCodeRef> code;
  OSStatus status = SecCodeCopySelf(kSecCSDefaultFlags, code.out());
  if (status != errSecSuccess) return FailedStatus(env, status, "SecCodeCopySelf");
  OSStatus validity = SecCodeCheckValidity(code.get(), kSecCSDefaultFlags, nullptr);
  CFOwned<CFDictionaryRef> signing;
  status = SecCodeCopySigningInformation(code.get(), kSecCSSigningInformation, signing.out());
  if (status != errSecSuccess) return FailedStatus(env, status, "SecCodeCopySigningInformation");

  Napi::Object o = Ok(env);
  o.Set("signed", validity != errSecCSUnsigned);
  o.Set("valid", validity == errSecSuccess);
  o.Set("validityStatus", Napi::Number::New(env, validity));
  const void* team = CFDictionaryGetValue(signing.get(), kSecCodeInfoTeamIdentifier);
  if (team != nullptr && CFGetTypeID(team) == CFStringGetTypeID()) {
    o.Set("teamId", FromCFString(static_cast<CFStringRef>(team)));
  } else {
    o.Set("teamId", env.Null());
  }
  const void* identifier = CFDictionaryGetValue(signing.get(), kSecCodeInfoIdentifier);
  if (identifier != nullptr && CFGetTypeID(identifier) == CFStringGetTypeID()) {
    o.Set("identifier", FromCFString(static_cast<CFStringRef>(identifier)));
  } else {
    o.Set("identifier", env.Null());
  }
  int64_t flags = 0;
  const void* flagsValue = CFDictionaryGetValue(signing.get(), kSecCodeInfoFlags);
  bool haveFlags = flagsValue != nullptr && CFGetTypeID(flagsValue) == CFNumberGetTypeID() &&
                   CFNumberGetValue(static_cast<CFNumberRef>(flagsValue), kCFNumberSInt64Type, &flags);
  o.Set("flags", haveFlags ? Napi::Number::New(env, static_cast<double>(flags)) : env.Null());
  o.Set("hardenedRuntime", haveFlags && (static_cast<uint64_t>(flags) & kSecCodeSignatureRuntime) != 0);
  const void* unique = CFDictionaryGetValue(signing.get(), kSecCodeInfoUnique);
  if (unique != nullptr && CFGetTypeID(unique) == CFDataGetTypeID()) {
    o.Set("cdhash", Hex(static_cast<CFDataRef>(unique)));
  } else {
    o.Set("cdhash", env.Null());
  }
  return o;
#else
  return Unsupported(env);
#endif
}

// secureEnclaveKey(tag): loads this app's Secure Enclave P-256 key with this tag, or creates it
// (permanent, usable only for signing inside the enclave, only while unlocked, never leaving this
// device). Answers the public key as a 65-byte uncompressed point and whether it was created now.
Napi::Value SecureEnclaveKey(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string tag;
  if (!CheckArgCount(info, 1) || !ReadTag(info, 0, &tag)) return env.Undefined();
#ifdef __APPLE__
  SecKeyRef loaded = nullptr;
  OSStatus status = LoadEnclaveKey(tag, &loaded);
  bool created = false;
  CFOwned<SecKeyRef> key(loaded);
  if (status == errSecItemNotFound) {
    CFErrorRef error = nullptr;
    CFOwned<SecAccessControlRef> access(SecAccessControlCreateWithFlags(
        kCFAllocatorDefault, kSecAttrAccessibleWhenUnlockedThisDeviceOnly, kSecAccessControlPrivateKeyUsage, &error));
    if (!access) return FailedFromCFError(env, error, "SecAccessControlCreateWithFlags");
    CFOwned<CFDataRef> tagData(TagData(tag));
    const void* privateKeys[] = {kSecAttrIsPermanent, kSecAttrApplicationTag, kSecAttrAccessControl};
    const void* privateValues[] = {kCFBooleanTrue, tagData.get(), access.get()};
    CFOwned<CFDictionaryRef> privateAttrs(MakeDictionary(privateKeys, privateValues, 3));
    int bits = 256;
    CFOwned<CFNumberRef> keySize(CFNumberCreate(kCFAllocatorDefault, kCFNumberIntType, &bits));
    const void* keys[] = {kSecAttrKeyType, kSecAttrKeySizeInBits, kSecAttrTokenID, kSecPrivateKeyAttrs, kSecUseDataProtectionKeychain};
    const void* values[] = {kSecAttrKeyTypeECSECPrimeRandom, keySize.get(), kSecAttrTokenIDSecureEnclave, privateAttrs.get(), kCFBooleanTrue};
    CFOwned<CFDictionaryRef> attrs(MakeDictionary(keys, values, 5));
    SecKeyRef fresh = SecKeyCreateRandomKey(attrs.get(), &error);
    if (fresh == nullptr) return FailedFromCFError(env, error, "SecKeyCreateRandomKey");
    CFOwned<SecKeyRef> owned(fresh);
    CFErrorRef exportError = nullptr;
    Napi::Value publicKey = PublicKeyOf(env, owned.get(), &exportError);
    if (publicKey.IsNull()) return FailedFromCFError(env, exportError, "SecKeyCopyExternalRepresentation");
    created = true;
    Napi::Object o = Ok(env);
    o.Set("created", created);
    o.Set("publicKey", publicKey);
    return o;
  }
  if (status != errSecSuccess) return FailedStatus(env, status, "SecItemCopyMatching");
  CFErrorRef exportError = nullptr;
  Napi::Value publicKey = PublicKeyOf(env, key.get(), &exportError);
  if (publicKey.IsNull()) return FailedFromCFError(env, exportError, "SecKeyCopyExternalRepresentation");
  Napi::Object o = Ok(env);
  o.Set("created", created);
  o.Set("publicKey", publicKey);
  return o;
#else
  return Unsupported(env);
#endif
}

// secureEnclaveSign(tag, message): ECDSA P-256 over SHA-256(message) inside the enclave
// (kSecKeyAlgorithmECDSASignatureMessageX962SHA256), answered as a DER signature.
Napi::Value SecureEnclaveSign(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string tag;
  std::vector<uint8_t> message;
  if (!CheckArgCount(info, 2) || !ReadTag(info, 0, &tag) || !ReadMessage(info, 1, &message)) return env.Undefined();
#ifdef __APPLE__
  SecKeyRef loaded = nullptr;
  OSStatus status = LoadEnclaveKey(tag, &loaded);
  if (status != errSecSuccess) return FailedStatus(env, status, "SecItemCopyMatching");
  CFOwned<SecKeyRef> key(loaded);
  CFOwned<CFDataRef> data(CFDataCreate(kCFAllocatorDefault, message.data(), static_cast<CFIndex>(message.size())));
  CFErrorRef error = nullptr;
  CFOwned<CFDataRef> signature(SecKeyCreateSignature(key.get(), kSecKeyAlgorithmECDSASignatureMessageX962SHA256, data.get(), &error));
  if (!signature) return FailedFromCFError(env, error, "SecKeyCreateSignature");
  Napi::Object o = Ok(env);
  o.Set("signature",
        Napi::Buffer<uint8_t>::Copy(env, CFDataGetBytePtr(signature.get()), static_cast<size_t>(CFDataGetLength(signature.get()))));
  return o;
#else
  return Unsupported(env);
#endif
}

// secureEnclaveDelete(tag): deletes this app's key with this tag; deleted: false if there was none.
Napi::Value SecureEnclaveDelete(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string tag;
  if (!CheckArgCount(info, 1) || !ReadTag(info, 0, &tag)) return env.Undefined();
#ifdef __APPLE__
  CFOwned<CFDataRef> tagData(TagData(tag));
  const void* keys[] = {kSecClass, kSecAttrApplicationTag, kSecAttrKeyType, kSecAttrTokenID, kSecUseDataProtectionKeychain};
  const void* values[] = {kSecClassKey, tagData.get(), kSecAttrKeyTypeECSECPrimeRandom, kSecAttrTokenIDSecureEnclave, kCFBooleanTrue};
  CFOwned<CFDictionaryRef> query(MakeDictionary(keys, values, 5));
  OSStatus status = SecItemDelete(query.get());
  if (status != errSecSuccess && status != errSecItemNotFound) return FailedStatus(env, status, "SecItemDelete");
  Napi::Object o = Ok(env);
  o.Set("deleted", status == errSecSuccess);
  return o;
#else
  return Unsupported(env);
#endif
}

// hidIdleTime(): seconds since the last keyboard, mouse or trackpad input (IOHIDSystem's HIDIdleTime, in ns).
Napi::Value HidIdleTime(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!CheckArgCount(info, 0)) return env.Undefined();
#ifdef __APPLE__
  // MACH_PORT_NULL is the default main port (kIOMainPortDefault on macOS 12+, kIOMasterPortDefault before).
  io_service_t service = IOServiceGetMatchingService(MACH_PORT_NULL, IOServiceMatching("IOHIDSystem"));
  if (service == IO_OBJECT_NULL) return Failed(env, -1, "IOServiceGetMatchingService found no IOHIDSystem");
  CFOwned<CFTypeRef> property(IORegistryEntryCreateCFProperty(service, CFSTR("HIDIdleTime"), kCFAllocatorDefault, 0));
  IOObjectRelease(service);
  int64_t nanoseconds = -1;
  if (property && CFGetTypeID(property.get()) == CFNumberGetTypeID()) {
    if (!CFNumberGetValue(static_cast<CFNumberRef>(property.get()), kCFNumberSInt64Type, &nanoseconds)) nanoseconds = -1;
  } else if (property && CFGetTypeID(property.get()) == CFDataGetTypeID() &&
             CFDataGetLength(static_cast<CFDataRef>(property.get())) == static_cast<CFIndex>(sizeof nanoseconds)) {
    std::memcpy(&nanoseconds, CFDataGetBytePtr(static_cast<CFDataRef>(property.get())), sizeof nanoseconds);
  }
  if (nanoseconds < 0) return Failed(env, -1, "IORegistryEntryCreateCFProperty gave no HIDIdleTime");
  Napi::Object o = Ok(env);
  o.Set("idleSeconds", Napi::Number::New(env, static_cast<double>(nanoseconds) / 1e9));
  return o;
#else
  return Unsupported(env);
#endif
}

// thermalState(): NSProcessInfo.processInfo.thermalState, through the Objective-C runtime's C API.
Napi::Value ThermalState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!CheckArgCount(info, 0)) return env.Undefined();
#ifdef __APPLE__
  using SendId = id (*)(id, SEL);
  using SendLong = long (*)(id, SEL);  // NSInteger is long on every 64-bit Mac
  id processInfoClass = reinterpret_cast<id>(objc_getClass("NSProcessInfo"));
  if (processInfoClass == nullptr) return Failed(env, -1, "NSProcessInfo is not loaded");
  id processInfo = reinterpret_cast<SendId>(&objc_msgSend)(processInfoClass, sel_registerName("processInfo"));
  if (processInfo == nullptr) return Failed(env, -1, "NSProcessInfo.processInfo is nil");
  long state = reinterpret_cast<SendLong>(&objc_msgSend)(processInfo, sel_registerName("thermalState"));
  static const char* names[] = {"nominal", "fair", "serious", "critical"};
  if (state < 0 || state > 3) return Failed(env, state, "NSProcessInfo.thermalState answered an unknown state");
  Napi::Object o = Ok(env);
  o.Set("state", names[state]);
  return o;
#else
  return Unsupported(env);
#endif
}

// chipName(): sysctlbyname("machdep.cpu.brand_string"), e.g. "Apple M2 Pro".
Napi::Value ChipName(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!CheckArgCount(info, 0)) return env.Undefined();
#ifdef __APPLE__
  std::string chip;
  if (!SysctlString("machdep.cpu.brand_string", &chip) || chip.empty()) return Failed(env, errno, "sysctlbyname(machdep.cpu.brand_string) failed");
  Napi::Object o = Ok(env);
  o.Set("chip", chip);
  return o;
#else
  return Unsupported(env);
#endif
}

// coreCounts(): performance (hw.perflevel0.physicalcpu) and efficiency (hw.perflevel1.physicalcpu)
// cores; null where the Mac has no such level (an Intel Mac has no perflevel sysctls at all).
Napi::Value CoreCounts(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!CheckArgCount(info, 0)) return env.Undefined();
#ifdef __APPLE__
  int32_t performance = 0;
  int32_t efficiency = 0;
  bool havePerformance = SysctlInt("hw.perflevel0.physicalcpu", &performance);
  bool haveEfficiency = SysctlInt("hw.perflevel1.physicalcpu", &efficiency);
  Napi::Object o = Ok(env);
  o.Set("performance", havePerformance ? Napi::Number::New(env, performance) : env.Null());
  o.Set("efficiency", haveEfficiency ? Napi::Number::New(env, efficiency) : env.Null());
  return o;
#else
  return Unsupported(env);
#endif
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("addonInfo", Napi::Function::New(env, AddonInfo, "addonInfo"));
  exports.Set("denyDebuggerAttach", Napi::Function::New(env, DenyDebuggerAttach, "denyDebuggerAttach"));
  exports.Set("sipStatus", Napi::Function::New(env, SipStatus, "sipStatus"));
  exports.Set("codeSigning", Napi::Function::New(env, CodeSigning, "codeSigning"));
  exports.Set("secureEnclaveKey", Napi::Function::New(env, SecureEnclaveKey, "secureEnclaveKey"));
  exports.Set("secureEnclaveSign", Napi::Function::New(env, SecureEnclaveSign, "secureEnclaveSign"));
  exports.Set("secureEnclaveDelete", Napi::Function::New(env, SecureEnclaveDelete, "secureEnclaveDelete"));
  exports.Set("hidIdleTime", Napi::Function::New(env, HidIdleTime, "hidIdleTime"));
  exports.Set("thermalState", Napi::Function::New(env, ThermalState, "thermalState"));
  exports.Set("chipName", Napi::Function::New(env, ChipName, "chipName"));
  exports.Set("coreCounts", Napi::Function::New(env, CoreCounts, "coreCounts"));
  return exports;
}

}  // namespace

NODE_API_MODULE(nightjar_native, Init)
