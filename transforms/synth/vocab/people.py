"""People and places of the synthetic night: names with their frequencies, the post-2025 (34) and
pre-2025 (63) provinces, wards, ethnic groups, occupations, insurance card groups, departments."""

from __future__ import annotations

import unicodedata


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def parse_names(spec: str) -> tuple[str, ...]:
    """'Tân Phú, An Khánh' -> ("Tân Phú", "An Khánh")."""
    return tuple(nfc(s.strip()) for s in spec.split(",") if s.strip())


def parse_pairs(spec: str) -> tuple[tuple[str, float], ...]:
    """'Nguyễn 38, Trần 11' -> (("Nguyễn", 38.0), ("Trần", 11.0))."""
    out = []
    for item in spec.replace("\n", " ").split(","):
        item = item.strip()
        if item:
            name, weight = item.rsplit(" ", 1)
            out.append((nfc(name.strip()), float(weight)))
    return tuple(out)


# Family names: the distribution of the national surveys (Nguyễn about 38%, Trần 11%, Lê 9.5%...).
FAMILY_NAMES = parse_pairs(
    """Nguyễn 38, Trần 11, Lê 9.5, Phạm 7, Hoàng 3.2, Huỳnh 2.1, Phan 4.5, Vũ 2.9, Võ 1.9,
    Đặng 2.1, Bùi 2, Đỗ 1.4, Hồ 1.3, Ngô 1.3, Dương 1, Lý 0.5, Đinh 0.6, Trương 0.5, Lâm 0.4,
    Mai 0.4, Đoàn 0.4, Trịnh 0.4, Cao 0.3, Lương 0.3, Tạ 0.2, Hà 0.3, Vương 0.2, Châu 0.2,
    Tô 0.2, Triệu 0.15, Quách 0.1, Thái 0.1, Kiều 0.1, La 0.1, Khổng 0.05, Mạc 0.05"""
)

# Middle names by sex; "" is a name without a middle name (rare, mostly in the south).
MIDDLE_NAMES_MALE = parse_pairs(
    """Văn 40, Đức 9, Minh 9, Quang 6, Hữu 6, Thanh 5, Công 4, Tiến 3, Ngọc 3, Hoàng 3,
    Xuân 3, Anh 2.5, Quốc 3, Gia 2.5, Trọng 2, Thành 2, Đình 3, Bảo 2, Tuấn 1.5, Khánh 1, " 1"""
)
MIDDLE_NAMES_FEMALE = parse_pairs(
    """Thị 45, Ngọc 8, Thu 5, Thanh 5, Minh 4, Phương 3, Hồng 3, Kim 3, Mai 2, Bảo 2,
    Khánh 2, Thùy 3, Diệu 1, Hoài 1.5, Quỳnh 1.5, Tuyết 1, Gia 2, Hải 1.5, Mỹ 2, " 1"""
)
GIVEN_NAMES_MALE = parse_pairs(
    """Hùng 9, Dũng 8, Tuấn 8, Minh 8, Nam 7, Hải 7, Long 6, Thắng 6, Cường 6, Hiếu 5, Hoàng 5,
    Phúc 5, Huy 6, Khang 5, Sơn 5, Trung 5, Tùng 5, Quân 5, Đức 5, Bình 5, Thành 5, Vinh 4, Phong 4,
    Kiên 4, Lâm 3, Hưng 4, Toàn 4, Tâm 3, Đạt 5, Khoa 4, Bảo 4, An 5, Hoà 3, Thịnh 3, Việt 3,
    Trí 3, Hào 2, Nghĩa 3, Tài 3, Lộc 3, Phát 3, Quý 2, Duy 4, Khải 2, Nhân 3, Hậu 2, Thái 2,
    Tiến 3, Linh 2, Lợi 2, Chiến 2, Đông 2, Giang 2, Hiển 1, Kha 1, Luân 1, Mạnh 3, Nguyên 3,
    Phương 1, Quang 3, Sang 2, Thuận 2, Tín 2, Trọng 2, Vũ 3, Ân 1, Bách 1, Định 1, Hạnh 1"""
)
GIVEN_NAMES_FEMALE = parse_pairs(
    """Lan 8, Hương 8, Linh 8, Hà 7, Trang 8, Thảo 7, Hoa 6, Anh 7, Ngọc 6, Mai 6, Phương 6,
    Huyền 6, Hằng 6, Nhung 5, Loan 4, Dung 5, Thủy 5, Yến 5, Vân 4, Hạnh 5, Hồng 5, Nga 4,
    Oanh 3, Quỳnh 4, Trâm 3, Uyên 3, Vy 4, Nhi 4, Giang 3, My 3, Tâm 3, Thư 4, Ly 3, Hiền 4,
    Liên 3, Tuyết 3, Xuân 3, Châu 2, Diệp 1, Duyên 3, Hậu 2, Khánh 2, Kim 2, Lệ 2, Lý 2, Mơ 1,
    Ngân 4, Nguyệt 2, Nhàn 2, Phượng 2, Quyên 2, Sen 1, Thơ 2, Thoa 2, Tiên 2, Trinh 3,
    Tú 2, Vi 2, Xuyến 1, An 3, Bích 2, Chi 3, Diễm 2, Hiên 1, Lụa 1, Mến 1, Thắm 2"""
)

# Post-2025 provinces (Resolution 202/2025/QH15): 2-digit code -> name. 34 units.
PROVINCES = {
    "01": "Thành phố Hà Nội",
    "04": "Tỉnh Cao Bằng",
    "08": "Tỉnh Tuyên Quang",
    "11": "Tỉnh Điện Biên",
    "12": "Tỉnh Lai Châu",
    "14": "Tỉnh Sơn La",
    "15": "Tỉnh Lào Cai",
    "19": "Tỉnh Thái Nguyên",
    "20": "Tỉnh Lạng Sơn",
    "22": "Tỉnh Quảng Ninh",
    "24": "Tỉnh Bắc Ninh",
    "25": "Tỉnh Phú Thọ",
    "31": "Thành phố Hải Phòng",
    "33": "Tỉnh Hưng Yên",
    "37": "Tỉnh Ninh Bình",
    "38": "Tỉnh Thanh Hóa",
    "40": "Tỉnh Nghệ An",
    "42": "Tỉnh Hà Tĩnh",
    "44": "Tỉnh Quảng Trị",
    "46": "Thành phố Huế",
    "48": "Thành phố Đà Nẵng",
    "51": "Tỉnh Quảng Ngãi",
    "52": "Tỉnh Gia Lai",
    "56": "Tỉnh Khánh Hòa",
    "66": "Tỉnh Đắk Lắk",
    "68": "Tỉnh Lâm Đồng",
    "75": "Tỉnh Đồng Nai",
    "79": "Thành phố Hồ Chí Minh",
    "80": "Tỉnh Tây Ninh",
    "82": "Tỉnh Đồng Tháp",
    "86": "Tỉnh Vĩnh Long",
    "91": "Tỉnh An Giang",
    "92": "Thành phố Cần Thơ",
    "96": "Tỉnh Cà Mau",
}
PROVINCES = {k: nfc(v) for k, v in PROVINCES.items()}


# Pre-2025 provinces (63): the 3-digit code a citizen ID starts with (never reissued), a population
# weight, and the post-2025 province it merged into: (code, new province code, weight).
def _triples(spec: str) -> tuple[tuple[str, str, float], ...]:
    words = spec.split()
    return tuple((words[i], words[i + 1], float(words[i + 2])) for i in range(0, len(words), 3))


BIRTH_PROVINCES = _triples(
    """
    001 01 85  002 08 9   004 04 5   006 19 3   008 08 8   010 15 8   011 11 6   012 12 5
    014 14 13  015 15 8   017 25 9   019 19 13  020 20 8   022 22 14  024 24 19  025 25 15
    026 25 12  027 24 15  030 31 19  031 31 21  033 33 13  034 33 19  035 37 9   036 37 18
    037 37 10  038 38 37  040 40 34  042 42 13  044 44 9   045 44 6   046 46 12  048 48 12
    049 48 15  051 51 12  052 52 15  054 66 9   056 56 12  058 56 6   060 68 12  062 51 6
    064 52 15  066 66 19  067 68 7   068 68 13  070 75 10  072 80 12  074 79 27  075 75 32
    077 79 12  079 79 94  080 80 17  082 82 18  083 86 13  084 86 10  086 86 10  087 82 16
    089 91 19  091 91 17  092 92 12  093 92 7   094 92 12  095 96 9   096 96 12
    """
)


# Ward name stems; a province's wards are "Phường <stem>" / "Xã <stem>" (synthetic set, real-looking).
WARD_STEMS = parse_names(
    """Tân Phú, An Khánh, Hòa Bình, Phú Mỹ, Long Hưng, Bến Thành, Tân Định, Hòa Khánh,
    Thạch Bàn, Ngọc Hà, Kim Liên, Phú Lợi, Tân Hiệp, Bình An, Thanh Xuân, Cầu Giấy, Hoàn Kiếm,
    Đông Hòa, Tây Sơn, Vĩnh Phúc, Quang Trung, Hưng Lợi, Mỹ Phước, Phước Long, Tân Thuận, An Lạc,
    Bình Trưng, Cát Lái, Linh Xuân, Hiệp Bình, Thủ Đức, Gò Vấp, Xuân Hòa, Nghĩa Đô, Yên Hòa,
    Định Công, Hoàng Mai, Lĩnh Nam, Vĩnh Tuy, Bạch Mai, Láng, Ô Chợ Dừa, Đống Đa, Kim Mã,
    Tam Kỳ, Hương Trà, Phú Xuân, Thuận Hóa, Cái Răng, Ninh Kiều, Bình Thủy, Thới An, Mỹ Tho,
    Sa Đéc, Long Xuyên, Châu Đốc, Rạch Giá, Bạc Liêu, Sóc Trăng, Trà Vinh, Bến Cát, Dĩ An"""
)
WARDS_PER_PROVINCE = 40


def province_wards(province_code: str) -> tuple[tuple[str, str], ...]:
    """The wards of a post-2025 province: (5-digit ward code, ward name), codes ascending with
    the province code like the national list."""
    k = sorted(PROVINCES).index(province_code)
    out = []
    for j in range(WARDS_PER_PROVINCE):
        stem = WARD_STEMS[(k * 7 + j) % len(WARD_STEMS)]
        kind = "Phường" if j % 3 == 0 else "Xã"
        out.append((f"{int(province_code) * 330 + j * 3 + 1:05d}", f"{kind} {stem}"))
    return tuple(out)


STREETS = parse_names(
    """Lê Lợi, Trần Hưng Đạo, Nguyễn Trãi, Hai Bà Trưng, Lý Thường Kiệt, Quang Trung,
    Hùng Vương, Phan Chu Trinh, Nguyễn Huệ, Điện Biên Phủ, Võ Thị Sáu, Cách Mạng Tháng Tám,
    Trường Chinh, Lê Duẩn, Bà Triệu, Nguyễn Văn Cừ, Phạm Văn Đồng, Tôn Đức Thắng"""
)
HAMLETS = (
    "Thôn 1",
    "Thôn 2",
    "Thôn 3",
    "Ấp Bình Lợi",
    "Ấp Tân Thành",
    "Xóm Đông",
    "Tổ 5",
    "Tổ 12",
    "Khu phố 3",
)

# Ethnic groups (Decision 121-TCTK/PPCĐ): code, weight.
ETHNICITIES = parse_pairs(
    "01 85.3, 02 1.9, 03 1.9, 04 0.8, 05 1.4, 06 1.5, 07 1.1, 08 1.3, 09 0.9, 10 0.5, 11 0.4, 12 0.3"
)
NATIONALITY_VN = "000"
# Occupation (Decision 34/2020/QĐ-TTg, level 2, as 3176 asks); "00" none (children, retired).
OCCUPATIONS = parse_pairs(
    "00 20, 11 1, 21 3, 22 2, 23 2, 24 2, 31 3, 41 3, 51 8, 52 6, 61 14, 71 6, 72 4, 81 5, 83 3, 91 8, 92 10"
)
BLOOD_GROUPS = parse_pairs("O 42, B 31, A 21, AB 6")
# Insurance card beneficiary groups (first 2 letters of MA_THE_BHYT) and the benefit level digit.
CARD_GROUPS = parse_pairs("DN 22, HC 5, HT 6, TE 12, HS 10, SV 3, GD 25, CN 6, HN 4, CK 2, BT 2, XN 1, NO 2")
CARD_LEVEL = {
    "DN": "4",
    "HC": "4",
    "HT": "3",
    "TE": "1",
    "HS": "4",
    "SV": "4",
    "GD": "4",
    "CN": "2",
    "HN": "3",
    "CK": "2",
    "BT": "2",
    "XN": "4",
    "NO": "4",
}
# Benefit percentage by card benefit level digit (MUC_HUONG).
BENEFIT_PCT = {"1": 100, "2": 100, "3": 95, "4": 80, "5": 100}

# Practising-licence province marks used in doctor codes "000123/HCM-CCHN".
LICENCE_MARKS = {
    "01": "HNO",
    "79": "HCM",
    "48": "DNG",
    "31": "HP",
    "92": "CT",
    "46": "TTH",
    "38": "TH",
    "40": "NA",
    "56": "KH",
    "75": "DNAI",
}

DEPARTMENTS = {
    "K01": "Khoa Khám bệnh",
    "K02": "Khoa Hồi sức cấp cứu",
    "K03": "Khoa Nội tổng hợp",
    "K04": "Khoa Nội tim mạch",
    "K05": "Khoa Nội tiêu hóa",
    "K08": "Khoa Nội tiết",
    "K10": "Khoa Truyền nhiễm",
    "K12": "Khoa Thần kinh",
    "K16": "Khoa Nhi",
    "K19": "Khoa Ngoại tổng hợp",
    "K26": "Khoa Chấn thương chỉnh hình",
    "K28": "Khoa Phụ sản",
    "K29": "Khoa Tai Mũi Họng",
    "K30": "Khoa Răng Hàm Mặt",
    "K31": "Khoa Mắt",
    "K33": "Khoa Y học cổ truyền",
    "K36": "Khoa Ung bướu",
    "K48": "Khoa Hô hấp",
}
# Department by ICD-10 chapter letter for inpatient stays.
DEPARTMENT_BY_LETTER = {
    "I": "K04",
    "K": "K05",
    "E": "K08",
    "A": "K10",
    "B": "K10",
    "G": "K12",
    "J": "K48",
    "S": "K26",
    "T": "K19",
    "O": "K28",
    "H": "K31",
    "C": "K36",
    "D": "K03",
}
