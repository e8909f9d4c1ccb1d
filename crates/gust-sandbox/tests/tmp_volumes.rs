//! Environments' /tmp volumes: each a filesystem of its own, bounded by the budget, and gone
//! from the host (image, loop device) when dropped. Needs root, as the sandbox does.
#![cfg(target_os = "linux")]

use std::path::Path;
use std::time::{Duration, Instant};

use gust_sandbox::linux::tmp_volume::{TmpVolumes, VolumeError};

/// Loop devices whose backing file is under `dir` (a deleted file shows as "… (deleted)").
fn loop_devices_under(dir: &Path) -> usize {
    let dir = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/sys/block")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_to_string(e.path().join("loop/backing_file"))
                .is_ok_and(|file| file.starts_with(&dir))
        })
        .count()
}

#[test]
fn volumes_are_bounded_by_the_budget_and_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    let mount_point = dir.path().join("tmp");
    std::fs::create_dir_all(&mount_point).unwrap();
    // One volume is made (and kept ready) at start: an empty one counts for nothing. The
    // budget has room for two taken by environments.
    let volumes = TmpVolumes::start(images.clone(), mount_point, 1100, 0)
        .expect("/tmp volumes need root, loop devices and mkfs.ext4");
    assert_eq!(volumes.usage(), (0, 1100));
    let first = volumes.take(512).unwrap();
    assert_eq!(volumes.usage(), (512, 1100));
    let second = volumes.take(512).unwrap();
    assert_eq!(volumes.usage(), (1024, 1100));
    assert!(matches!(
        volumes.take(512),
        Err(VolumeError::NoRoom { wanted: 512, .. })
    ));
    assert!(matches!(
        volumes.take(1024),
        Err(VolumeError::NoRoom { .. })
    ));
    // The image files are unlinked as soon as their loop device holds them.
    assert_eq!(std::fs::read_dir(&images).unwrap().count(), 0);
    assert_eq!(loop_devices_under(&images), 2);

    drop(first);
    let third = volumes.take(512).unwrap();
    assert_eq!(third.size_mb, 512);
    drop((second, third));
    assert_eq!(volumes.usage(), (0, 1100));
    let started = Instant::now();
    while loop_devices_under(&images) > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "loop devices outlived their volumes"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
