//! Curvature blocks for K-FAC, EKFAC, TKFAC and TEKFAC (f64 state).
