/* Test-only stand-in for Windows' bcryptprimitives.dll, which Debian's Wine 8.0 lacks.
 *
 * Rust's standard library (1.78 and later) imports ProcessPrng from bcryptprimitives.dll for
 * every random number (HashMap seeds included), so without this DLL no Rust .exe loads under
 * that Wine. Windows 10 and later (every Windows Server the product supports) ship the real
 * one. Built by the tests' Wine test bed into the throwaway prefix's system32; never shipped.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length); /* advapi32's RtlGenRandom */

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG chunk = length > 0x40000000 ? 0x40000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
