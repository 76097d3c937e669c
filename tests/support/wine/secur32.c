/* Test-only stand-in for one defect of Wine's SChannel, for the Wine test bed; never shipped.
 *
 * The defect (Wine 8.0, and every later Wine to date: dlls/secur32/schannel.c,
 * schan_DecryptMessage): given part of a TLS record, DecryptMessage returns
 * SEC_E_INCOMPLETE_MESSAGE and marks two buffers SECBUFFER_MISSING. The data buffer gets the
 * bytes still missing, as Windows reports them; the first empty buffer gets the record's whole
 * size (header included), because the same "expected - buffer->cbBuffer" is computed a second
 * time against that empty buffer, whose size is 0. schannel-rs (native-tls on Windows, under
 * ldap3 and reqwest) reads the count from that second buffer and then waits for that many more
 * bytes before it tries again. When the record is the last thing the server sends before it
 * waits for the client (an LDAP answer, an HTTP response), those bytes never come: the read
 * hangs until the product's own timeout. Which answers hang depends only on where the socket
 * reads happen to cut the records, hence "syncs 1, 100 or 200 users but not 5 to 50".
 *
 * Windows reports the bytes still missing (Microsoft's DecryptMessage (Schannel) documentation;
 * Wine's own conformance test, run on Windows, checks the data buffer's count), so on Windows
 * schannel-rs asks for exactly what is missing. This DLL makes Wine do the same and nothing
 * else: it is loaded as secur32.dll by the product's executables only (an AppDefaults DLL
 * override in the throwaway prefix), passes every call to Wine's own secur32 unchanged, and
 * after an incomplete DecryptMessage sets every SECBUFFER_MISSING count to the bytes the record
 * header says are still missing. Every byte of every record still goes through Wine's SChannel.
 */
#include <windows.h>

/* The few SSPI types used here, declared locally: mingw's sspi.h declares these functions as
 * imports, and this module defines them. */
typedef LONG SECURITY_STATUS; /* SEC_E_* come from winerror.h */
#define SEC_ENTRY WINAPI
#define SECBUFFER_DATA 1
#define SECBUFFER_MISSING 4
typedef struct { ULONG cbBuffer; ULONG BufferType; void *pvBuffer; } SecBuffer;
typedef struct { ULONG ulVersion; ULONG cBuffers; SecBuffer *pBuffers; } SecBufferDesc;
typedef SecBufferDesc *PSecBufferDesc;
typedef void *PCredHandle, *PCtxtHandle, *PTimeStamp, *SEC_GET_KEY_FN;
typedef char SEC_CHAR;
typedef WCHAR SEC_WCHAR;
typedef void *PSecPkgInfoA, *PSecPkgInfoW;

static HMODULE real;

/* Wine's secur32, by its full path: this module holds the name secur32.dll in the process. */
static FARPROC real_proc(const char *name)
{
    if (!real) {
        WCHAR path[MAX_PATH];
        UINT n = GetSystemDirectoryW(path, MAX_PATH - 16);
        if (!n || n >= MAX_PATH - 16) return NULL;
        lstrcatW(path, L"\\secur32.dll");
        real = LoadLibraryExW(path, NULL, 0);
        if (!real) return NULL;
    }
    return GetProcAddress(real, name);
}

#define FORWARD(ret, name, params, args)                                      \
    __declspec(dllexport) ret SEC_ENTRY name params                           \
    {                                                                         \
        typedef ret(SEC_ENTRY * fn_t) params;                                 \
        fn_t fn = (fn_t)(void (*)(void))real_proc(#name);                     \
        if (!fn) return SEC_E_INTERNAL_ERROR;                                 \
        return fn args;                                                       \
    }

FORWARD(SECURITY_STATUS, AcquireCredentialsHandleA,
        (SEC_CHAR *principal, SEC_CHAR *package, ULONG use, void *logon_id, void *auth,
         SEC_GET_KEY_FN get_key, void *arg, PCredHandle cred, PTimeStamp expiry),
        (principal, package, use, logon_id, auth, get_key, arg, cred, expiry))
FORWARD(SECURITY_STATUS, AcquireCredentialsHandleW,
        (SEC_WCHAR *principal, SEC_WCHAR *package, ULONG use, void *logon_id, void *auth,
         SEC_GET_KEY_FN get_key, void *arg, PCredHandle cred, PTimeStamp expiry),
        (principal, package, use, logon_id, auth, get_key, arg, cred, expiry))
FORWARD(SECURITY_STATUS, FreeCredentialsHandle, (PCredHandle cred), (cred))
FORWARD(SECURITY_STATUS, InitializeSecurityContextW,
        (PCredHandle cred, PCtxtHandle ctx, SEC_WCHAR *target, ULONG req, ULONG reserved1,
         ULONG rep, PSecBufferDesc input, ULONG reserved2, PCtxtHandle new_ctx,
         PSecBufferDesc output, ULONG *attrs, PTimeStamp expiry),
        (cred, ctx, target, req, reserved1, rep, input, reserved2, new_ctx, output, attrs,
         expiry))
FORWARD(SECURITY_STATUS, InitializeSecurityContextA,
        (PCredHandle cred, PCtxtHandle ctx, SEC_CHAR *target, ULONG req, ULONG reserved1,
         ULONG rep, PSecBufferDesc input, ULONG reserved2, PCtxtHandle new_ctx,
         PSecBufferDesc output, ULONG *attrs, PTimeStamp expiry),
        (cred, ctx, target, req, reserved1, rep, input, reserved2, new_ctx, output, attrs,
         expiry))
FORWARD(SECURITY_STATUS, AcceptSecurityContext,
        (PCredHandle cred, PCtxtHandle ctx, PSecBufferDesc input, ULONG req, ULONG rep,
         PCtxtHandle new_ctx, PSecBufferDesc output, ULONG *attrs, PTimeStamp expiry),
        (cred, ctx, input, req, rep, new_ctx, output, attrs, expiry))
FORWARD(SECURITY_STATUS, ApplyControlToken, (PCtxtHandle ctx, PSecBufferDesc input),
        (ctx, input))
FORWARD(SECURITY_STATUS, DeleteSecurityContext, (PCtxtHandle ctx), (ctx))
FORWARD(SECURITY_STATUS, QueryContextAttributesW, (PCtxtHandle ctx, ULONG attr, void *buf),
        (ctx, attr, buf))
FORWARD(SECURITY_STATUS, QueryContextAttributesA, (PCtxtHandle ctx, ULONG attr, void *buf),
        (ctx, attr, buf))
FORWARD(SECURITY_STATUS, QuerySecurityPackageInfoA, (SEC_CHAR *name, PSecPkgInfoA *info),
        (name, info))
FORWARD(SECURITY_STATUS, QuerySecurityPackageInfoW, (SEC_WCHAR *name, PSecPkgInfoW *info),
        (name, info))
FORWARD(SECURITY_STATUS, EncryptMessage,
        (PCtxtHandle ctx, ULONG qop, PSecBufferDesc message, ULONG seq), (ctx, qop, message, seq))
FORWARD(SECURITY_STATUS, FreeContextBuffer, (void *buf), (buf))

/* Wine's schannel.dll forwards these to secur32.dll, which in this process is this module. */
__declspec(dllexport) void *SEC_ENTRY InitSecurityInterfaceA(void)
{
    typedef void *(SEC_ENTRY * fn_t)(void);
    fn_t fn = (fn_t)(void (*)(void))real_proc("InitSecurityInterfaceA");
    return fn ? fn() : NULL;
}

__declspec(dllexport) void *SEC_ENTRY InitSecurityInterfaceW(void)
{
    typedef void *(SEC_ENTRY * fn_t)(void);
    fn_t fn = (fn_t)(void (*)(void))real_proc("InitSecurityInterfaceW");
    return fn ? fn() : NULL;
}

__declspec(dllexport) SECURITY_STATUS SEC_ENTRY DecryptMessage(PCtxtHandle ctx,
    PSecBufferDesc message, ULONG seq, ULONG *qop)
{
    typedef SECURITY_STATUS(SEC_ENTRY * fn_t)(PCtxtHandle, PSecBufferDesc, ULONG, ULONG *);
    fn_t fn = (fn_t)(void (*)(void))real_proc("DecryptMessage");
    const unsigned char *data = NULL;
    ULONG have = 0, missing;
    SECURITY_STATUS status;
    ULONG i;

    if (!fn) return SEC_E_INTERNAL_ERROR;
    for (i = 0; message && i < message->cBuffers; i++) {
        if (message->pBuffers[i].BufferType == SECBUFFER_DATA) {
            data = message->pBuffers[i].pvBuffer;
            have = message->pBuffers[i].cbBuffer;
            break;
        }
    }
    status = fn(ctx, message, seq, qop);
    if (status != SEC_E_INCOMPLETE_MESSAGE || !data) return status;

    /* A TLS record: 5 header bytes (type, version, length), then `length` bytes. */
    if (have < 5)
        missing = 5 - have;
    else
        missing = 5 + (((ULONG)data[3] << 8) | data[4]) - have;
    for (i = 0; i < message->cBuffers; i++) {
        if (message->pBuffers[i].BufferType == SECBUFFER_MISSING)
            message->pBuffers[i].cbBuffer = missing;
    }
    return status;
}
