fn main() {
    isoroot_init::pid1()
}
