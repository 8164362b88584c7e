//! Making container processes: the parent side (`spawn`), the container's init (`init`),
//! processes joining a running container (`exec`), the setup channel (`sync`), and the
//! process attributes both init and exec apply last (`finalize`).

pub mod exec;
pub mod finalize;
pub mod init;
pub mod spawn;
pub mod sync;
