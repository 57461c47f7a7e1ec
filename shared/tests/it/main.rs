//! Integration tests of bucky-shared: the reference vectors, fill properties, corrupt input.

mod corrupt;
mod fill_safe;
mod support;
mod vectors_fill;
mod vectors_ring;
mod vectors_update_many;
mod write_back;
