/* Test-only revocation provider for the Wine test bed: answers "not revoked" for every
 * certificate, so that Wine 8.0 verifies a TLS chain the way Windows does for this product.
 *
 * Why: schannel-rs (native-tls on Windows) builds the chain with a cache-only revocation check
 * and then verifies it under the SSL policy with CERT_CHAIN_POLICY_IGNORE_ALL_REV_UNKNOWN_FLAGS.
 * Windows honours that flag, so a certificate that names no CRL distribution point (Samba's,
 * and most self-made DC certificates) is accepted with its revocation status unknown. Wine 8.0's
 * verify_ssl_policy ignores the flag and fails with CERT_E_REVOCATION_FAILURE; Wine 10.1 fixed
 * it ("crypt32: Favour CERT_CHAIN_POLICY_IGNORE_END_REV_UNKNOWN_FLAG in verify_ssl_policy()").
 * Registered in place of cryptnet.dll in the throwaway prefix only; never shipped. The product's
 * own handling of CERT_E_REVOCATION_FAILURE is tested without this provider.
 */
#include <windows.h>
#include <wincrypt.h>

__declspec(dllexport) BOOL WINAPI CertDllVerifyRevocation(DWORD encoding, DWORD type,
    DWORD count, PVOID contexts[], DWORD flags, PCERT_REVOCATION_PARA para,
    PCERT_REVOCATION_STATUS status)
{
    (void)encoding; (void)type; (void)contexts; (void)flags; (void)para;
    if (status) {
        status->dwIndex = count;
        status->dwError = 0;
        status->dwReason = 0;
    }
    return TRUE;
}
