//! Datasets: IDX reader, MNIST / Fashion-MNIST, batching (see issue: real data).
