//! Datasets: catalog, daily quota, download grants and short-lived signed object URLs (issue 5; nothing here yet).
