//! Records what the jailer created so a failure can remove it again, newest first.

use std::io::ErrorKind;
use std::path::PathBuf;

#[derive(Debug)]
enum Action {
    /// A directory tree the jailer created (the jail directory).
    RemoveTree(PathBuf),
    /// A file the jailer created in a jail directory it did not create.
    RemoveFile(PathBuf),
    /// A directory the jailer created (a cgroup, or a parent directory).
    /// `shared`: another jail may have started using it meanwhile; then it stays.
    Rmdir { path: PathBuf, shared: bool },
}

/// The undo log of one jailer run.
#[derive(Debug, Default)]
pub struct Undo {
    actions: Vec<Action>,
}

impl Undo {
    pub fn remove_tree(&mut self, path: PathBuf) {
        self.actions.push(Action::RemoveTree(path));
    }

    pub fn remove_file(&mut self, path: PathBuf) {
        self.actions.push(Action::RemoveFile(path));
    }

    pub fn rmdir(&mut self, path: PathBuf) {
        self.actions.push(Action::Rmdir {
            path,
            shared: false,
        });
    }

    pub fn rmdir_shared(&mut self, path: PathBuf) {
        self.actions.push(Action::Rmdir { path, shared: true });
    }

    /// Undoes everything recorded, newest first. Problems are reported on stderr:
    /// the original error is what the caller returns.
    pub fn run(self) {
        for action in self.actions.into_iter().rev() {
            match action {
                Action::RemoveTree(path) => match std::fs::remove_dir_all(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => eprintln!("jailer: undo: cannot remove {}: {e}", path.display()),
                },
                Action::RemoveFile(path) => match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => eprintln!("jailer: undo: cannot remove {}: {e}", path.display()),
                },
                Action::Rmdir { path, shared } => match std::fs::remove_dir(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(_) if shared => {}
                    Err(e) => eprintln!("jailer: undo: cannot remove {}: {e}", path.display()),
                },
            }
        }
    }
}
