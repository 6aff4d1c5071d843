//! openraft storage on sled
