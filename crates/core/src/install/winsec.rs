//! Reading and setting a folder's security descriptor through the Win32 security API (never by
//! running icacls and parsing what it prints). The descriptors themselves are decided as data
//! in `access`; `SetNamedSecurityInfoW` also carries a folder's inheritable ACEs to what it
//! already holds (an upgrade's state and logs).
//!
//! Under Wine the calls succeed and the descriptor is reduced to Unix mode bits (Wine keeps no
//! ACLs): the calls are exercised there, their effect only by the model in `access`.

use std::path::Path;
use windows_sys::Win32::Foundation::{ERROR_SUCCESS, GetLastError, LocalFree};
use windows_sys::Win32::Security::Authorization::{
    ConvertSecurityDescriptorToStringSecurityDescriptorW,
    ConvertStringSecurityDescriptorToSecurityDescriptorW, GetNamedSecurityInfoW, SDDL_REVISION_1,
    SE_FILE_OBJECT, SetNamedSecurityInfoW,
};
use windows_sys::Win32::Security::{
    ACL, DACL_SECURITY_INFORMATION, GetSecurityDescriptorControl, GetSecurityDescriptorDacl,
    GetSecurityDescriptorOwner, OWNER_SECURITY_INFORMATION, PROTECTED_DACL_SECURITY_INFORMATION,
    PSECURITY_DESCRIPTOR, PSID, SE_DACL_PROTECTED, UNPROTECTED_DACL_SECURITY_INFORMATION,
};

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

fn win_error(what: &str, code: u32) -> String {
    format!(
        "{what}: {} (Windows error {code})",
        std::io::Error::from_raw_os_error(code as i32)
    )
}

/// A descriptor from `ConvertStringSecurityDescriptorToSecurityDescriptorW`, freed on drop.
struct Owned(PSECURITY_DESCRIPTOR);

impl Drop for Owned {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: allocated by the system with LocalAlloc, freed once.
            unsafe {
                LocalFree(self.0);
            }
        }
    }
}

/// The binary descriptor of `sddl`, freed on drop.
fn descriptor(sddl: &str) -> Result<Owned, String> {
    let text = wide(sddl);
    let mut sd: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
    // SAFETY: `text` is NUL-terminated; `sd` receives a LocalAlloc'd descriptor.
    let ok = unsafe {
        ConvertStringSecurityDescriptorToSecurityDescriptorW(
            text.as_ptr(),
            SDDL_REVISION_1,
            &mut sd,
            std::ptr::null_mut(),
        )
    };
    if ok == 0 {
        // SAFETY: no argument.
        return Err(win_error(
            &format!("the descriptor `{sddl}` is not valid"),
            unsafe { GetLastError() },
        ));
    }
    Ok(Owned(sd))
}

/// Sets `path`'s owner and DACL to those of `sddl` (protected or not, as `sddl` says).
pub fn set(path: &Path, sddl: &str) -> Result<(), String> {
    let sd = descriptor(sddl)?;
    let mut owner: PSID = std::ptr::null_mut();
    let mut dacl: *mut ACL = std::ptr::null_mut();
    let mut present = 0;
    let mut defaulted = 0;
    let mut control = 0u16;
    let mut revision = 0u32;
    // SAFETY: `sd.0` is a valid descriptor; the out pointers point into it.
    unsafe {
        GetSecurityDescriptorOwner(sd.0, &mut owner, &mut defaulted);
        GetSecurityDescriptorDacl(sd.0, &mut present, &mut dacl, &mut defaulted);
        GetSecurityDescriptorControl(sd.0, &mut control, &mut revision);
    }
    let mut info = DACL_SECURITY_INFORMATION;
    if !owner.is_null() {
        info |= OWNER_SECURITY_INFORMATION;
    }
    info |= if control & SE_DACL_PROTECTED != 0 {
        PROTECTED_DACL_SECURITY_INFORMATION
    } else {
        UNPROTECTED_DACL_SECURITY_INFORMATION
    };
    let name = wide(&path.to_string_lossy());
    // SAFETY: `name` is NUL-terminated; owner and DACL point into `sd`, alive for the call.
    let rc = unsafe {
        SetNamedSecurityInfoW(
            name.as_ptr(),
            SE_FILE_OBJECT,
            info,
            owner,
            std::ptr::null_mut(),
            dacl,
            std::ptr::null(),
        )
    };
    if rc != ERROR_SUCCESS {
        return Err(win_error(
            &format!("setting who may use {}", path.display()),
            rc,
        ));
    }
    Ok(())
}

/// `path`'s owner and DACL as SDDL.
pub fn get(path: &Path) -> Result<String, String> {
    let name = wide(&path.to_string_lossy());
    let mut sd: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
    let info = OWNER_SECURITY_INFORMATION | DACL_SECURITY_INFORMATION;
    // SAFETY: `name` is NUL-terminated; `sd` receives a LocalAlloc'd descriptor.
    let rc = unsafe {
        GetNamedSecurityInfoW(
            name.as_ptr(),
            SE_FILE_OBJECT,
            info,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            &mut sd,
        )
    };
    if rc != ERROR_SUCCESS {
        return Err(win_error(
            &format!("reading who may use {}", path.display()),
            rc,
        ));
    }
    let sd = Owned(sd);
    let mut text: *mut u16 = std::ptr::null_mut();
    let mut len = 0u32;
    // SAFETY: `sd.0` is valid; `text` receives a LocalAlloc'd NUL-terminated string.
    let ok = unsafe {
        ConvertSecurityDescriptorToStringSecurityDescriptorW(
            sd.0,
            SDDL_REVISION_1,
            info,
            &mut text,
            &mut len,
        )
    };
    if ok == 0 {
        // SAFETY: no argument.
        return Err(win_error("converting a descriptor to text", unsafe {
            GetLastError()
        }));
    }
    let text = Owned(text.cast());
    // SAFETY: the system wrote `len` UTF-16 units (with the NUL) at `text`.
    let units = unsafe { std::slice::from_raw_parts(text.0 as *const u16, len as usize) };
    Ok(String::from_utf16_lossy(units)
        .trim_end_matches('\0')
        .to_string())
}

/// Creates the folder `path` (its parent must exist) with the owner and DACL of `sddl` in
/// the one call that makes it: no moment exists in which it has the parent's inherited ACL
/// (in ProgramData, one that lets every user create files in it). `Ok(false)`: it existed.
pub fn create_dir(path: &Path, sddl: &str) -> Result<bool, String> {
    use windows_sys::Win32::Foundation::ERROR_ALREADY_EXISTS;
    use windows_sys::Win32::Security::SECURITY_ATTRIBUTES;
    use windows_sys::Win32::Storage::FileSystem::CreateDirectoryW;
    let sd = descriptor(sddl)?;
    let sa = SECURITY_ATTRIBUTES {
        nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
        lpSecurityDescriptor: sd.0,
        bInheritHandle: 0,
    };
    let name = wide(&path.to_string_lossy());
    // SAFETY: `name` is NUL-terminated; `sa` and the descriptor it points to outlive the call.
    if unsafe { CreateDirectoryW(name.as_ptr(), &sa) } != 0 {
        return Ok(true);
    }
    // SAFETY: no argument.
    match unsafe { GetLastError() } {
        ERROR_ALREADY_EXISTS => Ok(false),
        code => Err(win_error(&format!("creating {}", path.display()), code)),
    }
}

/// Whether this process runs under Wine (ntdll exports `wine_get_version`), where a
/// descriptor is reduced to Unix mode bits and an owner is always the Wine user: the checks
/// that read owners and DACLs cannot be made there, and say so.
pub fn is_wine() -> bool {
    use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleW, GetProcAddress};
    let ntdll = wide("ntdll.dll");
    // SAFETY: a NUL-terminated name; ntdll is always loaded; the name is a NUL-terminated
    // ASCII string.
    unsafe {
        let module = GetModuleHandleW(ntdll.as_ptr());
        !module.is_null() && GetProcAddress(module, c"wine_get_version".as_ptr().cast()).is_some()
    }
}

/// The System32 folder (`GetSystemDirectoryW`), where the tools the install runs are taken
/// from by absolute path: Windows searches a program's own folder first, so a bare `reg`
/// could be a `reg.exe` someone put beside ad-sync-setup.
pub fn system_dir() -> Option<std::path::PathBuf> {
    use windows_sys::Win32::System::SystemInformation::GetSystemDirectoryW;
    let mut buf = [0u16; 512];
    // SAFETY: `buf` holds `buf.len()` units.
    let n = unsafe { GetSystemDirectoryW(buf.as_mut_ptr(), buf.len() as u32) } as usize;
    (n > 0 && n < buf.len()).then(|| std::path::PathBuf::from(String::from_utf16_lossy(&buf[..n])))
}
