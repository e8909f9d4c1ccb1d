//! Each environment's /tmp: an ext4 filesystem of its own, of exactly its `EphemeralStorage`,
//! on a sparse image file on the host's disk through a loop device.
//!
//! On Lambda /tmp is storage, not memory. A tmpfs would charge every byte written to /tmp to
//! the function's memory cgroup, where it cannot be reclaimed: a 256 MB function writing
//! 300 MB would be killed. A disk-backed filesystem's pages are page cache, which the kernel
//! writes back and reclaims under the cgroup's limit instead. A filesystem per environment
//! (rather than directories with quotas on a shared one) gives exactly what a function sees on
//! Lambda: `ENOSPC` on the write that passes the size, `statfs` showing that size, and
//! nothing shared with another environment.
//!
//! mkfs runs once per size; each volume is a copy of the blocks it wrote into a new sparse
//! file. Making one still costs a few milliseconds (loop device, mount), so a thread keeps a few of the
//! default size ready, each already mounted in the mount namespace its environment will use.
//! The image file is unlinked as soon as its loop device holds it, and the loop device clears
//! itself when its filesystem is unmounted (when the last process of the environment's mount
//! namespace is gone): nothing is left on the host's disk after an environment, even if Gust
//! is killed.
//!
//! The images are sparse: a volume takes from the host's disk only what its environment
//! writes. The sum of live volumes' sizes is bounded by a budget (by default several times the
//! free space, as thin provisioning goes: most environments write little), and no volume is
//! made while the disk's free space is below a reserve kept for the host; either way the
//! invoke path retires idle environments to make room, else the cold start fails clearly.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use linux_raw_sys::loop_device::{
    LO_FLAGS_AUTOCLEAR, LO_FLAGS_DIRECT_IO, LOOP_CONFIGURE, LOOP_CTL_GET_FREE, loop_config,
};

/// The size every environment gets unless its function asks for another (Lambda's default).
const DEFAULT_MB: u32 = 512;

/// Why a /tmp volume could not be had.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error(
        "no room for a {wanted} MB /tmp: live environments' /tmp already takes {committed} MB of the {budget} MB the host allows (gust serve --tmp-budget)"
    )]
    NoRoom {
        wanted: u32,
        committed: u64,
        budget: u64,
    },
    #[error(
        "no room for a new /tmp: the host's disk has {free} MB free, below the {reserve} MB kept for the host"
    )]
    DiskShort { free: u64, reserve: u64 },
    #[error("cannot make a /tmp volume ({step}): {source}")]
    Make {
        step: &'static str,
        source: io::Error,
    },
}

impl VolumeError {
    /// Whether the host's room for /tmp is taken (rather than a volume failing to be made).
    pub fn is_storage_full(&self) -> bool {
        matches!(
            self,
            VolumeError::NoRoom { .. } | VolumeError::DiskShort { .. }
        )
    }
}

fn step(step: &'static str) -> impl FnOnce(io::Error) -> VolumeError {
    move |source| VolumeError::Make { step, source }
}

/// A share of the /tmp budget, returned when dropped.
struct Reservation {
    mb: u64,
    committed: Arc<AtomicU64>,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.committed.fetch_sub(self.mb, Ordering::AcqRel);
    }
}

/// One environment's /tmp: a mount namespace in which its filesystem is mounted at the
/// launcher's /tmp mount point. The filesystem (and with it the loop device and the disk
/// space) goes when the namespace does.
pub struct TmpVolume {
    pub mount_namespace: OwnedFd,
    pub size_mb: u32,
    /// Its share of the budget, from when an environment takes it (a volume made ahead is
    /// empty and holds a few hundred KB of the disk).
    _reservation: Option<Reservation>,
}

struct Shared {
    ready: Mutex<Vec<TmpVolume>>,
    wake: Condvar,
    committed: Arc<AtomicU64>,
    budget_mb: u64,
    /// Space (MB) left free on the images' filesystem: no new volume is made below it.
    reserve_mb: u64,
    images: PathBuf,
    mount_point: PathBuf,
    mkfs: PathBuf,
    wanted: usize,
    /// Set when the launcher goes: the refill thread stops instead of making more.
    closing: std::sync::atomic::AtomicBool,
    /// A formatted, empty filesystem per size, made once.
    templates: Mutex<HashMap<u32, Arc<Template>>>,
}

/// An empty filesystem of one size as the blocks mkfs wrote (a few hundred KB; the rest of
/// the image reads as zeros): writing them into a new sparse file makes another in well under
/// a millisecond, where running mkfs costs several.
struct Template {
    extents: Vec<(u64, Vec<u8>)>,
}

impl Template {
    /// Formats an image of `size_mb` in `dir` and keeps what mkfs wrote.
    fn make(mkfs: &Path, dir: &Path, size_mb: u32) -> Result<Self, VolumeError> {
        let path = dir.join(uuid_like()).with_extension("template");
        let made = (|| {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(step("creating the template image"))?;
            file.set_len(image_bytes(size_mb))
                .map_err(step("sizing the template image"))?;
            format(mkfs, &path)?;
            data_extents(&file).map_err(step("reading the template image"))
        })();
        let _ = fs::remove_file(&path);
        Ok(Self { extents: made? })
    }

    /// Writes the filesystem into `file`, a new file of the image's size.
    fn write_to(&self, file: &File) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        for (offset, data) in &self.extents {
            file.write_all_at(data, *offset)?;
        }
        Ok(())
    }
}

/// The regions of `file` that hold data (not holes), with their contents.
fn data_extents(file: &File) -> io::Result<Vec<(u64, Vec<u8>)>> {
    use std::os::unix::fs::FileExt;
    let length = file.metadata()?.len();
    let seek = |offset: u64, whence: libc::c_int| -> io::Result<Option<u64>> {
        // SAFETY: lseek(2) on a descriptor we own; it only moves the file offset.
        let at = unsafe { libc::lseek(file.as_raw_fd(), offset as libc::off_t, whence) };
        if at >= 0 {
            return Ok(Some(at as u64));
        }
        let error = io::Error::last_os_error();
        // ENXIO: no data at or after `offset`.
        match error.raw_os_error() {
            Some(libc::ENXIO) => Ok(None),
            _ => Err(error),
        }
    };
    let mut extents = Vec::new();
    let mut offset = 0;
    while offset < length {
        let Some(start) = seek(offset, libc::SEEK_DATA)? else {
            break;
        };
        let end = seek(start, libc::SEEK_HOLE)?.unwrap_or(length).min(length);
        let mut data = vec![0; (end - start) as usize];
        file.read_exact_at(&mut data, start)?;
        extents.push((start, data));
        offset = end;
    }
    Ok(extents)
}

/// Makes /tmp volumes, keeps a few of the default size ready, and holds the budget.
pub struct TmpVolumes {
    shared: Arc<Shared>,
}

/// Where e2fsprogs' mkfs.ext4 is (sbin directories are often not on a service's PATH).
fn find_mkfs() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(
            ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
                .iter()
                .map(PathBuf::from),
        )
        .map(|dir| dir.join("mkfs.ext4"))
        .find(|candidate| candidate.is_file())
}

impl TmpVolumes {
    /// Prepares `images` (a directory on the disk that will hold the image files) and starts
    /// the thread that keeps `ready` volumes of the default size. Volumes mount at
    /// `mount_point` in their own mount namespaces. Fails with a clear reason when the host
    /// cannot make them (no loop devices, no mkfs.ext4).
    pub fn start(
        images: PathBuf,
        mount_point: PathBuf,
        budget_mb: u64,
        ready: usize,
    ) -> io::Result<Self> {
        let mkfs = find_mkfs().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "environments' /tmp needs mkfs.ext4 (Debian: apt install e2fsprogs)",
            )
        })?;
        if images.exists() {
            fs::remove_dir_all(&images)?;
        }
        fs::create_dir_all(&images)?;
        let (size_mb, _) = disk_space_mb(&images)?;
        let shared = Arc::new(Shared {
            reserve_mb: (size_mb / 20).clamp(256, 4096),
            ready: Mutex::new(Vec::new()),
            wake: Condvar::new(),
            committed: Arc::new(AtomicU64::new(0)),
            budget_mb,
            images,
            mount_point,
            mkfs,
            wanted: ready,
            closing: std::sync::atomic::AtomicBool::new(false),
            templates: Mutex::new(HashMap::new()),
        });
        // One volume made now proves that the host can make them.
        let first = shared.make(DEFAULT_MB).map_err(io::Error::other)?;
        shared.lock().push(first);
        let worker = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("gust-tmp-volumes".into())
            .spawn(move || refill(worker))?;
        Ok(Self { shared })
    }

    /// A volume of `size_mb` in its own mount namespace: a ready one if it has the default
    /// size, else one made now.
    pub fn take(&self, size_mb: u32) -> Result<TmpVolume, VolumeError> {
        let reservation = self.shared.reserve(size_mb)?;
        let ready = (size_mb == DEFAULT_MB)
            .then(|| self.shared.lock().pop())
            .flatten();
        self.shared.wake.notify_one();
        let mut volume = match ready {
            Some(volume) => volume,
            None => self.shared.make(size_mb)?,
        };
        volume._reservation = Some(reservation);
        Ok(volume)
    }

    /// MB of /tmp committed to live environments, and the budget.
    pub fn usage(&self) -> (u64, u64) {
        (
            self.shared.committed.load(Ordering::Acquire),
            self.shared.budget_mb,
        )
    }
}

impl Drop for TmpVolumes {
    fn drop(&mut self) {
        self.shared.closing.store(true, Ordering::Release);
        self.shared.lock().clear();
        self.shared.wake.notify_all();
    }
}

/// Keeps the pool of ready volumes topped up while the launcher lives.
fn refill(shared: std::sync::Weak<Shared>) {
    loop {
        let Some(strong) = shared.upgrade() else {
            return;
        };
        let missing = {
            let ready = strong.lock();
            let ready = strong
                .wake
                .wait_timeout_while(ready, std::time::Duration::from_secs(5), |r| {
                    r.len() >= strong.wanted
                })
                .map(|(guard, _)| guard)
                .unwrap_or_else(|p| p.into_inner().0);
            if strong.closing.load(Ordering::Acquire) {
                return;
            }
            strong.wanted.saturating_sub(ready.len())
        };
        for _ in 0..missing {
            if strong.closing.load(Ordering::Acquire) {
                return;
            }
            match strong.make(DEFAULT_MB) {
                Ok(volume) => strong.lock().push(volume),
                Err(e) => {
                    tracing::warn!(error = %e, "could not prepare a /tmp volume");
                    break;
                }
            }
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<TmpVolume>> {
        self.ready.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The empty filesystem of `size_mb`, formatted the first time it is asked for.
    fn template(&self, size_mb: u32) -> Result<Arc<Template>, VolumeError> {
        let mut templates = self.templates.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(template) = templates.get(&size_mb) {
            return Ok(template.clone());
        }
        let template = Arc::new(Template::make(&self.mkfs, &self.images, size_mb)?);
        templates.insert(size_mb, template.clone());
        Ok(template)
    }

    fn reserve(&self, size_mb: u32) -> Result<Reservation, VolumeError> {
        let (_, free) =
            disk_space_mb(&self.images).map_err(step("reading the disk's free space"))?;
        if free < self.reserve_mb {
            return Err(VolumeError::DiskShort {
                free,
                reserve: self.reserve_mb,
            });
        }
        let wanted = u64::from(size_mb);
        let mut committed = self.committed.load(Ordering::Acquire);
        loop {
            if committed + wanted > self.budget_mb {
                return Err(VolumeError::NoRoom {
                    wanted: size_mb,
                    committed,
                    budget: self.budget_mb,
                });
            }
            match self.committed.compare_exchange(
                committed,
                committed + wanted,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    return Ok(Reservation {
                        mb: wanted,
                        committed: self.committed.clone(),
                    });
                }
                Err(now) => committed = now,
            }
        }
    }

    /// Writes an empty filesystem of `size_mb` into a new image, attaches it to a loop
    /// device, unlinks it, and mounts it in a new mount namespace.
    fn make(&self, size_mb: u32) -> Result<TmpVolume, VolumeError> {
        let template = self.template(size_mb)?;
        let image = self.images.join(uuid_like()).with_extension("ext4");
        let made = (|| {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&image)
                .map_err(step("creating the image file"))?;
            file.set_len(image_bytes(size_mb))
                .map_err(step("sizing the image file"))?;
            template
                .write_to(&file)
                .map_err(step("writing the filesystem"))?;
            let (device, path) = attach(&file)?;
            // The loop device holds the file now; its blocks are freed when it lets go.
            fs::remove_file(&image).map_err(step("unlinking the image file"))?;
            drop(file);
            let mount_namespace = mount_in_new_namespace(&path, &self.mount_point)
                .map_err(step("mounting the filesystem"))?;
            // The mount holds the device from here: closing it lets it clear itself later.
            drop(device);
            Ok(mount_namespace)
        })();
        if made.is_err() {
            let _ = fs::remove_file(&image);
        }
        Ok(TmpVolume {
            mount_namespace: made?,
            size_mb,
            _reservation: None,
        })
    }
}

/// The image's size for a filesystem that offers `size_mb` to files: ext4's own metadata
/// (inode tables, bitmaps) takes about 2% of it, and the file itself some blocks of extents.
fn image_bytes(size_mb: u32) -> u64 {
    let size = u64::from(size_mb) << 20;
    size + size / 32 + (4 << 20)
}

/// The size and the space available (MB) of the filesystem holding `dir`.
pub fn disk_space_mb(dir: &Path) -> io::Result<(u64, u64)> {
    let path = CString::new(dir.as_os_str().as_bytes())?;
    // SAFETY: statvfs is plain old data; all-zero is a valid value.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: statvfs(2) with a NUL-terminated path fills the struct we own.
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((
        (stat.f_blocks * stat.f_frsize) >> 20,
        (stat.f_bavail * stat.f_frsize) >> 20,
    ))
}

/// A unique file name.
fn uuid_like() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "tmp-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// An ext4 filesystem without a journal (/tmp holds nothing worth recovering), no reserved
/// blocks, and inode tables left to be written as they are used (the file is sparse: unwritten
/// blocks read as zeros).
fn format(mkfs: &Path, image: &Path) -> Result<(), VolumeError> {
    let output = Command::new(mkfs)
        .args([
            "-q",
            "-F",
            "-b",
            "4096",
            "-m",
            "0",
            "-O",
            "^has_journal,^resize_inode",
            "-E",
            "lazy_itable_init=1,nodiscard,root_owner=0:0",
        ])
        .arg(image)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(step("running mkfs.ext4"))?;
    if !output.status.success() {
        return Err(VolumeError::Make {
            step: "running mkfs.ext4",
            source: io::Error::other(String::from_utf8_lossy(&output.stderr).trim().to_string()),
        });
    }
    Ok(())
}

/// Attaches `file` to a free loop device; returns the device, opened (the device stays
/// attached while it is open, and after that while it is mounted), and its path.
fn attach(file: &File) -> Result<(File, PathBuf), VolumeError> {
    let control = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/loop-control")
        .map_err(step("opening /dev/loop-control"))?;
    // Another process may take the free device first: then ask again.
    for _ in 0..16 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number.
        let number = unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE.into()) };
        if number < 0 {
            return Err(step("finding a free loop device")(
                io::Error::last_os_error(),
            ));
        }
        let path = PathBuf::from(format!("/dev/loop{number}"));
        let device = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(step("opening the loop device"))?;
        // SAFETY: both structs are plain old data; all-zero is a valid value.
        let mut config: loop_config = unsafe { std::mem::zeroed() };
        config.fd = file.as_raw_fd() as u32;
        config.block_size = 4096;
        // The loop device detaches itself when its last user (the mount) goes; reads and
        // writes bypass the image file's own page cache (the environment's filesystem already
        // caches them, charged to the environment).
        config.info.lo_flags = LO_FLAGS_AUTOCLEAR as u32 | LO_FLAGS_DIRECT_IO as u32;
        // SAFETY: LOOP_CONFIGURE reads a `struct loop_config` we own for the call's duration.
        let configured = unsafe {
            libc::ioctl(
                device.as_raw_fd(),
                LOOP_CONFIGURE.into(),
                &config as *const _,
            )
        };
        if configured == 0 {
            return Ok((device, path));
        }
        let error = io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::EBUSY) {
            return Err(step("configuring the loop device")(error));
        }
    }
    Err(step("configuring the loop device")(io::Error::other(
        "every free loop device was taken first",
    )))
}

/// Makes a mount namespace in which `device`'s filesystem is mounted at `mount_point`, world
/// writable with the sticky bit and empty (as /tmp is), and returns it. A short-lived thread
/// does it, since unsharing changes the calling thread's namespace.
fn mount_in_new_namespace(device: &Path, mount_point: &Path) -> io::Result<OwnedFd> {
    let source = CString::new(device.as_os_str().as_bytes())?;
    let target = CString::new(mount_point.as_os_str().as_bytes())?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: unshare(2) gives only this thread a new mount namespace and its own
                // filesystem context.
                if unsafe { libc::unshare(libc::CLONE_NEWNS | libc::CLONE_FS) } != 0 {
                    return Err(io::Error::last_os_error());
                }
                // Nothing mounted here may propagate back to the host.
                // SAFETY: mount(2) in this thread's new namespace, with a NUL-terminated static
                // path and nulls where the call takes none.
                let private = unsafe {
                    libc::mount(
                        std::ptr::null(),
                        c"/".as_ptr(),
                        std::ptr::null(),
                        libc::MS_REC | libc::MS_PRIVATE,
                        std::ptr::null(),
                    )
                };
                if private != 0 {
                    return Err(io::Error::last_os_error());
                }
                // SAFETY: mount(2) in this thread's new namespace, with NUL-terminated strings
                // that outlive the call.
                let mounted = unsafe {
                    libc::mount(
                        source.as_ptr(),
                        target.as_ptr(),
                        c"ext4".as_ptr(),
                        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOATIME,
                        // Blocks of deleted files go back to the host's disk at once.
                        c"noinit_itable,discard".as_ptr().cast(),
                    )
                };
                if mounted != 0 {
                    return Err(io::Error::last_os_error());
                }
                // mkfs leaves lost+found; Lambda's /tmp starts empty.
                let _ = fs::remove_dir(mount_point.join("lost+found"));
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(mount_point, fs::Permissions::from_mode(0o1777))?;
                Ok(OwnedFd::from(File::open("/proc/thread-self/ns/mnt")?))
            })
            .join()
            .map_err(|_| io::Error::other("the mount namespace thread panicked"))?
    })
}
