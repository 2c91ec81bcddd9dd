import STUN
import Testing

@Suite("IP addresses, transport addresses and CIDR")
struct AddressTests {
    @Test(
        "IPv4 text",
        arguments: [
            ("1.2.3.4", [1, 2, 3, 4]), ("0.0.0.0", [0, 0, 0, 0]), ("255.255.255.255", [255, 255, 255, 255]),
            ("192.0.2.1", [192, 0, 2, 1]), ("10.0.0.10", [10, 0, 0, 10]),
        ] as [(String, [UInt8])])
    func ipv4(text: String, bytes: [UInt8]) throws {
        let address = try #require(IPAddress(text))
        #expect(address.family == .ipv4)
        #expect(address.bytes == bytes)
        #expect(address.description == text)
        #expect(IPAddress(bytes: bytes) == address)
    }

    @Test(
        "invalid IPv4 text",
        arguments: [
            "", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1..2.3", " 1.2.3.4", "1.2.3.4 ", "a.b.c.d",
            "-1.2.3.4", "1.2.3.4/8", "1.2.3.0x4", "1.2.3.", ".1.2.3", "1234.1.1.1", "1.2.3.4:80",
        ])
    func invalidIPv4(text: String) {
        #expect(IPAddress(text) == nil)
    }

    @Test(
        "IPv6 text and RFC 5952 printing",
        arguments: [
            ("::", "::"), ("::1", "::1"), ("1::", "1::"), ("2001:db8::1", "2001:db8::1"),
            ("2001:DB8::A", "2001:db8::a"), ("2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
            ("1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"), ("1::2:3:4:5:6:7", "1:0:2:3:4:5:6:7"),
            ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"), ("2001:0:0:1:0:0:0:1", "2001:0:0:1::1"),
            ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"), ("::ffff:1.2.3.4", "::ffff:1.2.3.4"),
            ("::FFFF:102:304", "::ffff:1.2.3.4"), ("::1.2.3.4", "::102:304"),
            ("1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:102:304"),
            ("fe80::", "fe80::"), ("0:0:0:0:0:0:0:0", "::"), ("1:0:0:0:0:0:0:0", "1::"),
            ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            ("64:ff9b::192.0.2.33", "64:ff9b::c000:221"),
        ])
    func ipv6(text: String, canonical: String) throws {
        let address = try #require(IPAddress(text))
        #expect(address.family == .ipv6)
        #expect(address.bytes.count == 16)
        #expect(address.description == canonical)
        #expect(IPAddress(canonical) == address)
        #expect(IPAddress(bytes: address.bytes) == address)
    }

    @Test(
        "invalid IPv6 text",
        arguments: [
            ":", ":::", "1:::2", "1::2::3", "::1::", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", "12345::", "g::",
            "::1%eth0", "fe80::1%1", "1.2.3.4::", ":1::", "1::2:", ":1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8:",
            "::ffff:1.2.3", "::ffff:256.1.1.1", "1:2:3:4:5:6:7:1.2.3.4", "1:2:3:4:5:6:7::8", "1:2:3:4::5:6:7:8",
            "::1.2.3.4:5", "[::1]", "::-1", "1:2:3:4:5:6:7:8 ", "::0x1",
        ])
    func invalidIPv6(text: String) {
        #expect(IPAddress(text) == nil)
    }

    @Test("IPv4-mapped addresses")
    func mapped() throws {
        let mapped = try #require(IPAddress("::ffff:127.0.0.1"))
        #expect(mapped.mappedIPv4 == IPAddress(ipv4: 127, 0, 0, 1))
        #expect(mapped != IPAddress("127.0.0.1"))
        #expect(IPAddress("::1")?.mappedIPv4 == nil)
        #expect(IPAddress("127.0.0.1")?.mappedIPv4 == nil)
        #expect(IPAddress(ipv4: 0xC000_0201).description == "192.0.2.1")
        #expect(IPAddress(bytes: [1, 2, 3]) == nil)
        #expect(IPAddress("1.2.3.4")?.ipv4Value == 0x0102_0304)
    }

    @Test("transport addresses")
    func transportAddresses() throws {
        let v4 = try #require(TransportAddress("192.0.2.1:3478"))
        #expect(v4.ip == IPAddress("192.0.2.1"))
        #expect(v4.port == 3478)
        #expect(v4.description == "192.0.2.1:3478")
        let v6 = try #require(TransportAddress("[2001:DB8::1]:65535"))
        #expect(v6.description == "[2001:db8::1]:65535")
        #expect(TransportAddress("[::]:0")?.description == "[::]:0")
        for bad in [
            "1.2.3.4", "::1:5", "[::1]", "[::1]5", "1.2.3.4:65536", "1.2.3.4:-1", "[1.2.3.4]:5", "1.2.3.4:05",
            "1.2.3.4:", ":5", "[::1]:", "host:80", "[::1]:80x",
        ] {
            #expect(TransportAddress(bad) == nil, "\(bad)")
        }
        #expect(Set([v4, TransportAddress("192.0.2.1:3478")!, v6]).count == 2)
    }

    @Test("CIDR parsing and containment")
    func cidr() throws {
        let ten = try #require(CIDR("10.0.0.0/8"))
        #expect(ten.contains(IPAddress("10.255.255.255")!))
        #expect(ten.contains(IPAddress("10.0.0.0")!))
        #expect(!ten.contains(IPAddress("11.0.0.0")!))
        #expect(!ten.contains(IPAddress("9.255.255.255")!))
        #expect(ten.contains(IPAddress("::ffff:10.1.2.3")!))
        #expect(!ten.contains(IPAddress("::a01:203")!))
        #expect(!ten.contains(IPAddress("2001:db8::")!))

        let normalized = try #require(CIDR("192.168.1.77/24"))
        #expect(normalized.description == "192.168.1.0/24")
        #expect(normalized == CIDR("192.168.1.0/24"))
        #expect(CIDR("0.0.0.0/0")!.contains(IPAddress("255.1.2.3")!))
        #expect(!CIDR("0.0.0.0/0")!.contains(IPAddress("::1")!))
        #expect(CIDR("1.2.3.4")?.prefixLength == 32)
        #expect(CIDR("1.2.3.4/32")!.contains(IPAddress("1.2.3.4")!))
        #expect(!CIDR("1.2.3.4/32")!.contains(IPAddress("1.2.3.5")!))
        #expect(CIDR("169.254.0.0/16")!.contains(IPAddress("169.254.169.254")!))
        #expect(!CIDR("172.16.0.0/12")!.contains(IPAddress("172.32.0.1")!))
        #expect(CIDR("172.16.0.0/12")!.contains(IPAddress("172.31.255.255")!))

        let linkLocal = try #require(CIDR("fe80::/10"))
        #expect(linkLocal.contains(IPAddress("fe80::1")!))
        #expect(linkLocal.contains(IPAddress("febf:ffff::")!))
        #expect(!linkLocal.contains(IPAddress("fec0::")!))
        #expect(!linkLocal.contains(IPAddress("1.2.3.4")!))
        #expect(CIDR("::1/128")!.contains(IPAddress("::1")!))
        #expect(!CIDR("::1/128")!.contains(IPAddress("::2")!))
        #expect(CIDR("::/0")!.contains(IPAddress("ffff::")!))
        #expect(!CIDR("::/0")!.contains(IPAddress("1.2.3.4")!))
        #expect(CIDR("2001:db8::/64")!.contains(IPAddress("2001:db8::ffff:ffff:ffff:ffff")!))
        #expect(!CIDR("2001:db8::/64")!.contains(IPAddress("2001:db8:0:1::")!))
        #expect(CIDR("2001:db8::/65")!.contains(IPAddress("2001:db8::7fff:ffff:ffff:ffff")!))
        #expect(!CIDR("2001:db8::/65")!.contains(IPAddress("2001:db8::8000:0:0:0")!))
        #expect(CIDR("2001:db8::1/127")?.description == "2001:db8::/127")
        #expect(CIDR("::ffff:0:0/96")!.contains(IPAddress("::ffff:1.2.3.4")!))

        for bad in [
            "10.0.0.0/33", "::/129", "10.0.0.0/", "/8", "10.0.0.0/8/8", "10.0.0.0/-1", "10.0.0.0/08", "", "x/8",
            "10.0.0.0/ 8", "10.0.0.0/1000",
        ] {
            #expect(CIDR(bad) == nil, "\(bad)")
        }
        #expect(CIDR(network: IPAddress("1.2.3.4")!, prefixLength: 33) == nil)
        #expect(CIDR(network: IPAddress("1.2.3.4")!, prefixLength: -1) == nil)
    }
}
