fn main() {
    let (_tx, rx) = gort::chan::bounded::<u32>(0);
    let _a = gort::go!(move || rx.recv());
    for _ in 0..5 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        println!("---\n{}", gort::dump());
    }
}
