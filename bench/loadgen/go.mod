module concurrencylab/bench/loadgen

go 1.22
